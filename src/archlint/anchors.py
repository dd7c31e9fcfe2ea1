"""Where in a repository a finding can be shown: its physical anchors.

Findings name module paths inside a model, not lines in files, but code-scanning UIs
(SARIF on GitHub) only display results that point at a file and a line. Two anchors are
recorded after a lint, as absolute paths; renderers make them relative to the repository
root and pick the best one that lies inside it:

* the *target anchor*: the ``config.json`` the model was built from (line 1), or, for a
  Python factory target, the line that defines the factory or class;
* the *class anchors*: for each module class a finding names, the file and line of its
  ``class`` statement (only useful when the class is defined in the repository, i.e. a
  local model; classes from transformers or torch resolve to site-packages).
"""

from __future__ import annotations

import functools
import inspect
import os
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Anchor:
    """A file (absolute) and a 1-based line."""

    file: str
    line: int = 1

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line}

    @classmethod
    def from_dict(cls, data: dict) -> Anchor:
        return cls(str(data["file"]), int(data["line"]))

    def relative_to(self, root: str | os.PathLike) -> str | None:
        """The path relative to ``root`` with ``/`` separators, or None when outside it."""
        try:
            return Path(self.file).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return None


def target_anchor(spec) -> Anchor | None:
    """The file a target was read from: its config.json, or its factory's definition line."""
    if spec.kind == "factory" and spec.factory is not None:
        found = _definition(spec.factory)
        if found:
            return found
    if spec.config_file:
        return Anchor(str(Path(spec.config_file).resolve()), 1)
    return None


def class_anchors(graph, findings: Iterable) -> dict[str, Anchor]:
    """``module_class -> Anchor`` of its ``class`` statement, for the classes findings name."""
    out: dict[str, Anchor] = {}
    for finding in findings:
        if finding.module_class in out or not finding.paths or finding.paths[0] not in graph.nx:
            continue
        cls = graph.info(finding.paths[0]).cls
        if _library_class(cls) or graph.info(finding.paths[0]).class_name != finding.module_class:
            continue  # finding a class statement parses its whole file: not for library code, never shown
        found = _definition(cls)
        if found and not _installed(found.file):
            out[finding.module_class] = found
    return out


def _installed(file: str) -> bool:
    """Library code (transformers, torch, the standard library), even when the venv sits in the repo."""
    parts = Path(file).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return Path(file).resolve().is_relative_to(stdlib)


def _library_class(obj) -> bool:
    """Whether ``obj`` is defined in library code (:func:`_installed`), read from its file name alone."""
    try:
        file = inspect.getsourcefile(obj)
    except TypeError:  # built-ins
        return False
    return bool(file) and _installed(file)


@functools.cache
def _definition(obj) -> Anchor | None:
    try:
        file = inspect.getsourcefile(obj)
        _, line = inspect.getsourcelines(obj)
    except (TypeError, OSError):  # built-ins, classes made at run time, missing source
        return None
    return Anchor(str(Path(file).resolve()), max(line, 1)) if file else None
