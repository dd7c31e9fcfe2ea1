"""The data a rule produces: findings, their fixes, severities and confidences."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How bad a finding is. Ordered so that ``Severity.ERROR > Severity.INFO``."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected error, warning or info)") from None


class FailOn(enum.StrEnum):
    """The lowest severity that makes the exit code 1, or never."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    NEVER = "never"

    @property
    def severity(self) -> Severity | None:
        return None if self is FailOn.NEVER else Severity.parse(self.value)


class Confidence(enum.Enum):
    """How a finding was established: a structural fact, a behavioural probe, or a name."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Fix:
    """What to do about a finding. ``detail`` is text a user can paste."""

    title: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fix:
        return cls(data["title"], data.get("detail", ""))


@dataclass(frozen=True)
class Finding:
    """One problem on one module pattern, with every path it occurs at."""

    code: str
    name: str
    severity: Severity
    confidence: Confidence
    message: str
    module_class: str
    paths: tuple[str, ...]
    fix: Fix | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    pattern: str = ""  # derived from paths unless the rule names it (e.g. a target name)

    def __post_init__(self):
        if not self.pattern:
            object.__setattr__(self, "pattern", collapse_paths(self.paths))

    @property
    def count(self) -> int:
        return len(self.paths)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": str(self.severity),
            "confidence": str(self.confidence),
            "message": self.message,
            "module_class": self.module_class,
            "pattern": self.pattern,
            "paths": list(self.paths),
            "count": self.count,
            "fix": self.fix.to_dict() if self.fix else None,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The inverse of :meth:`to_dict` (a stored result renders exactly as the original)."""
        return cls(
            code=data["code"], name=data["name"], severity=Severity.parse(data["severity"]),
            confidence=Confidence(data["confidence"]), message=data["message"],
            module_class=data["module_class"], paths=tuple(data["paths"]),
            fix=Fix.from_dict(data["fix"]) if data.get("fix") else None,
            details=dict(data.get("details") or {}), pattern=data["pattern"],
        )


_INDEX = re.compile(r"^\d+$")
_INDICES = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.|$)")


def collapse_paths(paths: Iterable[str]) -> str:
    """The module pattern covering ``paths``: numeric segments that differ become ``*``.

    ``["a.layers.0.q", "a.layers.7.q"]`` gives ``"a.layers.*.q"``. Paths of different
    shapes have no common pattern; each numeric segment is still starred, and the
    first path's shape is kept, so the pattern remains a readable name.
    """
    paths = list(paths)
    if not paths:
        return ""
    split = [p.split(".") for p in paths]
    first = split[0]
    if len(paths) == 1:
        return paths[0]
    if any(len(s) != len(first) for s in split):
        return ".".join("*" if _INDEX.match(seg) else seg for seg in first)
    out = []
    for position, segment in enumerate(first):
        column = {s[position] for s in split}
        if len(column) == 1:
            out.append(segment)
        elif all(_INDEX.match(c) for c in column):
            out.append("*")
        else:
            out.append("{" + ",".join(sorted(column)) + "}")
    return ".".join(out)


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Merge findings that say the same thing about the same pattern, and sort them.

    Rules analyse each distinct block once and emit one finding per structural group;
    groups with the same pattern, code and message (e.g. sliding and global layers that
    differ only in a shape irrelevant to the rule) become one finding.
    """
    merged: dict[tuple, Finding] = {}
    for f in findings:
        key = (f.code, star_indices(f.pattern), f.message, f.fix, f.module_class)
        if key in merged:
            old = merged[key]
            paths = tuple(sorted(set(old.paths) | set(f.paths), key=path_sort_key))
            derived = old.pattern == collapse_paths(old.paths)
            merged[key] = dataclasses.replace(old, paths=paths, pattern="" if derived else old.pattern)
        else:
            merged[key] = f
    return sorted(merged.values(), key=lambda f: (-f.severity, f.code, path_sort_key(f.paths[0]) if f.paths else ()))


def star_indices(path: str) -> str:
    """``model.layers.3.mlp`` -> ``model.layers.*.mlp``."""
    return _INDICES.sub("*", path)


def path_sort_key(path: str) -> tuple:
    """Sort module paths naturally: ``layers.2`` before ``layers.10``."""
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in path.split("."))
