"""Where rendered reports go: stdout, ``--output``, every ``--report FORMAT:PATH``, and
GitHub's step summary. The model is built once; each output is one more render.

The colour and width of the text report are decided here, at the CLI edge:
``--no-color`` and a non-empty ``NO_COLOR`` turn colour off; otherwise colour is on for a
terminal, or when ``FORCE_COLOR`` is set (no-color.org, force-color.org). The width is
``COLUMNS`` when set, else the terminal's width, else 100. Files never get colour.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .render import FORMATS, RenderOptions, render
from .render.github import step_summary
from .report import Report

FILE_WIDTH = 100


@dataclass(frozen=True)
class ReportSpec:
    """One ``--report FORMAT:PATH``."""

    fmt: str
    path: str

    @classmethod
    def parse(cls, text: str) -> ReportSpec:
        fmt, sep, path = text.partition(":")
        if not sep or not path or fmt not in FORMATS:
            raise UsageError(f"--report {text!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)} "
                             "(e.g. --report sarif:archlint.sarif)")
        return cls(fmt, path)


def stdout_style(*, no_color: bool, to_terminal: bool, env: Mapping[str, str] = os.environ) -> tuple[bool, int]:
    """``(color, width)`` for the report printed on stdout."""
    color = not no_color and not env.get("NO_COLOR") and (to_terminal or bool(env.get("FORCE_COLOR")))
    columns = env.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return color, int(columns)
    return color, shutil.get_terminal_size((FILE_WIDTH, 24)).columns if to_terminal else FILE_WIDTH


def error_line(result) -> str:
    """The one stderr line of a target that failed: the target once, then the cause and what to do."""
    return f"archlint: error: {result.target}: {result.error_cause}"


def write_reports(report: Report, specs: Sequence[ReportSpec], options: RenderOptions) -> None:
    """Render ``report`` once per spec into its file (plain text: no colour, fixed width)."""
    plain = dataclasses.replace(options, color=False, width=FILE_WIDTH, errors_on_stderr=False)
    for spec in specs:
        write_text(spec.path, render(report, spec.fmt, plain), f"--report {spec.fmt}:{spec.path}", create_parents=True)


def check_writable(file: str | os.PathLike | None, option: str, *, create_parents: bool) -> None:
    """Refuse, before any lint runs, an output path that cannot be written (a :class:`UsageError`).

    A folder, a path under a regular file, a missing folder (unless ``create_parents``) or
    a read-only file or folder are refused; what only the write itself can tell (a full
    disk) is reported by :func:`write_text`.
    """
    if file is None or str(file) == "-":
        return
    path = Path(file)
    if path.is_dir():
        raise UsageError(f"{option}: {file} is a folder; name a file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option}: {file} is not writable")
        return
    parent = path.parent
    while create_parents and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.exists():
        raise UsageError(f"{option}: {file}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{option}: {file}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: {file}: the folder {parent} is not writable")


def write_text(file: str | os.PathLike, text: str, option: str, *, create_parents: bool) -> None:
    """Write ``text`` to ``file``; an OS error is a :class:`UsageError` naming the option."""
    path = Path(file)
    try:
        if create_parents and path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{option}: cannot write {file}: {e.strerror or e}") from e


def append_step_summary(report: Report, env: Mapping[str, str] = os.environ) -> bool:
    """Append the Markdown findings table to ``$GITHUB_STEP_SUMMARY`` if that is set."""
    target = env.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(step_summary(report))
    return True
