"""LoRA plans: parse a plan, evaluate it on the meta model with PEFT as the oracle,
verify suggested fixes. One job per module:

* :mod:`.model`            -- the validated :class:`Plan` (flags, mapping, adapter_config.json)
* :mod:`.oracle`           -- the installed PEFT run on a copy of the meta model
* :mod:`.reimplementation` -- the same answers without PEFT (documented, tested equal)
* :mod:`.matching`         -- what each ``target_modules`` entry reaches
* :mod:`.evaluate`         -- one plan's evaluation (verdict, entries, coverage, JSON)
* :mod:`.recipes`          -- the common recipes, evaluated when no plan is given
* :mod:`.context`          -- the evaluations of one lint, shared by the rules
* :mod:`.verify`           -- a suggested fix is run through PEFT before it is printed

Reading a plan (:class:`Plan`) needs no torch; the evaluation names load on first use.
"""

from __future__ import annotations

import importlib

from .model import Plan

_EVALUATE = ("EntryResult", "PlanEvaluation", "evaluate")

__all__ = ["EntryResult", "Plan", "PlanEvaluation", "evaluate"]


def __getattr__(name: str):
    if name in _EVALUATE:
        return getattr(importlib.import_module(".evaluate", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
