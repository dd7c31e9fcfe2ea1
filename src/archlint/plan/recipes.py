"""The common recipes (RULES.md), as plans: evaluated when the user gives no plan."""

from __future__ import annotations

from ..structure import QKVO, STANDARD_NAMES, peft_default_targets
from .model import ALL_LINEAR, Plan

#: Recipe name -> its label in reports (``source`` is ``recipe:<name>``).
LABELS = {"peft-default": "PEFT default", "qkvo": "q,k,v,o", "seven": "seven standard names", "all-linear": "all-linear"}


def common_recipes(model_type: str | None) -> list[Plan]:
    """PEFT's default targets for the type (when PEFT has some), q/k/v/o, the seven
    standard names and ``all-linear``, each at PEFT's default ``r=8``."""
    plans = []
    if peft_default_targets(model_type) is not None:
        plans.append(Plan(target_modules=None, source="recipe:peft-default"))
    plans.append(Plan(target_modules=QKVO, source="recipe:qkvo"))
    plans.append(Plan(target_modules=STANDARD_NAMES, source="recipe:seven"))
    plans.append(Plan(target_modules=ALL_LINEAR, source="recipe:all-linear"))
    return plans


def label(plan: Plan) -> str:
    """``recipe:seven`` -> ``seven standard names``; a user plan keeps its source."""
    name = plan.source.removeprefix("recipe:")
    return LABELS.get(name, plan.source) if plan.source.startswith("recipe:") else f"plan ({plan.source})"
