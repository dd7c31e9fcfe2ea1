"""Renderers: one module per output format, the same signature, chosen from a table."""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass

from ..findings import Severity
from ..report import Report


@dataclass(frozen=True)
class RenderOptions:
    color: bool = False
    width: int | None = None
    tree: bool = False
    quiet: bool = False
    fail_on: Severity | None = Severity.WARNING
    max_patterns: int = 8  # per code in text output; JSON always lists everything
    root: str | None = None  # repository root for file locations (SARIF, annotations); None: the cwd
    # a failed target's cause goes to stderr beside the report; a report written to a file carries it itself
    errors_on_stderr: bool = True


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    HTML = "html"


FORMATS = tuple(f.value for f in OutputFormat)


def renderers():
    """Format -> render function; the renderer modules are imported when asked for (rich is slow to import)."""
    from . import github, html, json_format, sarif, text

    return {OutputFormat.TEXT: text.render, OutputFormat.JSON: json_format.render,
            OutputFormat.SARIF: sarif.render, OutputFormat.GITHUB: github.render, OutputFormat.HTML: html.render}


_MODULES = {OutputFormat.TEXT: "text", OutputFormat.JSON: "json_format", OutputFormat.SARIF: "sarif",
            OutputFormat.GITHUB: "github", OutputFormat.HTML: "html"}


def render(report: Report, fmt: OutputFormat | str, options: RenderOptions) -> str:
    """``fmt``'s renderer; only its own module is imported (a cached report must not pay for
    the others, or for what they import)."""
    module = importlib.import_module(f".{_MODULES[OutputFormat(fmt)]}", __name__)
    return module.render(report, options)
