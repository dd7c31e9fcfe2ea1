"""What is installed: distribution versions and entry points, read cheaply.

A cached lint must answer in a fraction of a second, and ``importlib.metadata`` costs a
good part of that: importing it pulls in the ``email`` package, and ``version()`` parses
a distribution's whole METADATA (a README, for most). The ``*.dist-info`` folders on
``sys.path`` already name each distribution and its version, and hold its
``entry_points.txt``; this module reads those, the first distribution of a name winning
as in ``importlib.metadata``, and falls back to ``importlib.metadata`` for anything else
(eggs, zip files, metadata-only installs).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: The libraries whose behaviour a report predicts: their versions are in every report and
#: in every result-cache key (a new release can change what a lint says).
PREDICTED_LIBRARIES = ("torch", "transformers", "peft", "huggingface_hub", "bitsandbytes", "accelerate")

_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")


@dataclass
class _Found:
    versions: dict[str, str] = field(default_factory=dict)  # normalised name -> version
    folders: dict[str, Path] = field(default_factory=dict)  # normalised name -> its .dist-info
    others: bool = False  # distributions this module cannot read: eggs, zip files


_scanned: tuple[tuple[str, ...], _Found] | None = None


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _scan() -> _Found:
    """Every ``*.dist-info`` on ``sys.path`` (rescanned when ``sys.path`` changes)."""
    global _scanned
    path = tuple(sys.path)
    if _scanned is None or _scanned[0] != path:
        found = _Found()
        for entry in path:
            if entry.endswith((".zip", ".egg")):
                found.others = True
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            for item in names:
                if item.endswith((".egg-info", ".egg-link")):
                    found.others = True
                elif (m := _DIST_INFO.match(item)) is not None:
                    key = normalise(m["name"])
                    if key not in found.versions:
                        found.versions[key] = m["version"]
                        found.folders[key] = Path(entry or ".") / item
        _scanned = (path, found)
    return _scanned[1]


def installed_version(name: str) -> str | None:
    """The version of distribution ``name``, or None when it is not installed."""
    found = _scan().versions.get(normalise(name))
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def entry_point_rows(group: str) -> list[list[str]]:
    """``[name, value, distribution, version]`` of every entry point in ``group``, sorted:
    from the ``entry_points.txt`` of each ``*.dist-info``, and from ``importlib.metadata``
    only when some distribution on ``sys.path`` is not a ``*.dist-info`` folder."""
    found = _scan()
    rows = []
    for key, folder in found.folders.items():
        try:
            text = (folder / "entry_points.txt").read_text(encoding="utf-8")
        except OSError:
            continue
        for name, value in _section(text, group):
            rows.append([name, value, key, found.versions[key]])
    if found.others:
        from importlib.metadata import entry_points

        seen = {(r[0], r[1]) for r in rows}
        for ep in entry_points(group=group):
            if (ep.name, ep.value) not in seen and ep.dist is not None:
                rows.append([ep.name, ep.value, normalise(ep.dist.name), ep.dist.version])
    return sorted(rows)


def _section(text: str, group: str) -> list[tuple[str, str]]:
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out
