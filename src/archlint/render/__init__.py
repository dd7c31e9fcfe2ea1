"""Renderers: one module per output format, the same signature, chosen from a table."""

from __future__ import annotations

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


def renderers():
    from . import github, html, json_format, sarif, text

    return {"text": text.render, "json": json_format.render, "sarif": sarif.render, "github": github.render,
            "html": html.render}


FORMATS = ("text", "json", "sarif", "github", "html")  # the keys of renderers(), without importing them


_MODULES = {"text": "text", "json": "json_format", "sarif": "sarif", "github": "github", "html": "html"}


def render(report: Report, fmt: str, options: RenderOptions) -> str:
    """``fmt``'s renderer; only its own module is imported (SARIF reads the rules' documentation,
    which imports the rules and torch: a cached text or JSON report must not pay for that)."""
    module = importlib.import_module(f".{_MODULES[fmt]}", __name__)
    return module.render(report, options)
