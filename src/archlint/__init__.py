"""archlint: a static linter for deep-learning model architectures.

>>> import archlint
>>> report = archlint.lint("google/gemma-4-E2B-it")   # doctest: +SKIP

The public names are imported on first use, so ``import archlint`` (and ``archlint --help``)
loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import lint, lint_many
    from .findings import Confidence, Finding, Fix, Severity
    from .lora import Plan
    from .report import Report, TargetResult

_HOMES = {
    "lint": ".api",
    "lint_many": ".api",
    "Confidence": ".findings",
    "Finding": ".findings",
    "Fix": ".findings",
    "Severity": ".findings",
    "Plan": ".lora",
    "Report": ".report",
    "TargetResult": ".report",
}

__all__ = ["Confidence", "Finding", "Fix", "Plan", "Report", "Severity", "TargetResult", "lint", "lint_many"]


assert sorted(__all__) == sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
