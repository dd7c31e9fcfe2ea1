"""archlint: a static linter for deep-learning model architectures.

>>> import archlint
>>> report = archlint.lint("google/gemma-4-E2B-it")   # doctest: +SKIP

The public names are loaded on first use, so ``import archlint`` (and the command line
up to a cached result) never imports torch or transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "lint": ".api", "lint_many": ".api",
    "Confidence": ".findings", "Finding": ".findings", "Fix": ".findings", "Severity": ".findings",
    "Plan": ".plan", "Report": ".report", "TargetResult": ".report",
}

__all__ = ["Confidence", "Finding", "Fix", "Plan", "Report", "Severity", "TargetResult", "lint", "lint_many"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
