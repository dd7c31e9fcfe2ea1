"""Where a target string points, independent of the directory it was written in.

A configuration file names models relative to its own directory; the command line names
them relative to the current directory. ``target_identity`` turns either into one string
(absolute paths for files, folders and ``FILE.py:NAME`` factories; Hub ids, model types
and importable ``pkg.module:NAME`` factories unchanged) so both can be compared and resolved.
"""

from __future__ import annotations

import re
from pathlib import Path

_FILE_FACTORY = re.compile(r"^(?P<file>[^:]+\.py):(?P<name>[A-Za-z_][\w.]*)$")


def target_identity(target: str, base: Path) -> str:
    """``target`` written in directory ``base``, as a string ``resolve()`` understands anywhere."""
    if m := _FILE_FACTORY.match(target):
        return f"{_absolute(base / Path(m['file']).expanduser())}:{m['name']}"
    path = base / Path(target).expanduser()
    if _exists(path) or target.startswith((".", "/", "~")) or target.endswith(".json") or target.count("/") > 1:
        return str(_absolute(path))
    return target


def _absolute(path: Path) -> Path:
    """``path.resolve()``, or the path as given when it cannot be resolved (a symlink loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return path.absolute()


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
