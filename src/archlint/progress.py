"""A spinner on stderr while targets are fetched and built -- only when stderr is a terminal.

Pipes, files, CI logs and pre-commit never see it (stdout is never touched), so machine
formats stay clean and logs carry no carriage-return noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console


@contextmanager
def spinner(stream: TextIO, *, enabled: bool = True) -> Iterator[Callable[[str], None] | None]:
    """Yield ``update(message)`` drawing a rich status on ``stream``, or None when it is not a TTY."""
    if not enabled or not _isatty(stream):
        yield None
        return
    console = Console(file=stream, force_terminal=True, highlight=False)
    with console.status("archlint", spinner="dots") as status:
        yield lambda message: status.update(f"archlint: {message}")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False
