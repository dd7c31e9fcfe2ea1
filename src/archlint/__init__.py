"""archlint: a static linter for deep-learning model architectures.

>>> import archlint
>>> report = archlint.lint("google/gemma-4-E2B-it")   # doctest: +SKIP
"""

from .api import lint, lint_many
from .findings import Confidence, Finding, Fix, Severity
from .lora import Plan
from .report import Report, TargetResult

__all__ = ["Confidence", "Finding", "Fix", "Plan", "Report", "Severity", "TargetResult", "lint", "lint_many"]
