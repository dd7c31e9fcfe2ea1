"""The plan facts: the LoRA plan evaluations of one lint, computed before the rules.

With a user plan (``facts.plan``) that plan is evaluated; without one, the common
recipes are. PEFT is the oracle (:mod:`archlint.lora.evaluate`), and a plan PEFT injects
is only "ok" once one training step of the adapted model ran clean
(:mod:`archlint.lora.training_step`). LoRA rules read the
evaluations, decide from the user's plan what they report (:meth:`PlanFacts.touches`),
and verify the fixes they suggest through :meth:`PlanFacts.outcome_of`, which shares one
PEFT run per distinct ``LoraConfig`` with the evaluations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import one_line
from ..lora.evaluate import ADAPTED_COPY, SHRUNK_COPY, ModelIndex, PlanEvaluation, evaluate, peft_input, predict
from ..lora.oracle import Outcome
from ..lora.plan import Plan
from ..lora.recipes import common_recipes
from ..lora.training_step import StepCheck
from ..report import Engine
from .base import Facts, fact


@dataclass
class PlanFacts:
    """The evaluations (the user's plan, or each common recipe), or why there are none."""

    facts: Facts
    index: ModelIndex
    outcomes: dict = field(default_factory=dict)  # PEFT input -> Outcome, shared with the fixes
    evaluations: list[PlanEvaluation] = field(default_factory=list)
    error: str | None = None  # a plan PEFT could not even be asked about
    exception: Exception | None = field(default=None, repr=False)  # re-raised under --debug

    @property
    def user(self) -> PlanEvaluation | None:
        """The evaluation of the user's plan; None with the recipes (or when it failed)."""
        return self.evaluations[0] if self.facts.plan is not None and self.evaluations else None

    @property
    def scope(self) -> set[str] | None:
        """Every module the user's plan reaches (before PEFT's type dispatch) and the owners
        of the parameters it reaches; None without a user plan. A finding of LORA001-006
        is about the plan when it touches the scope, and a fix for the plan stays in it."""
        return None if self.user is None else touched_paths(self.user)

    def touches(self, paths: Iterable[str]) -> bool:
        """True without a user plan; with one, whether any of ``paths`` is in its scope."""
        scope = self.scope
        return scope is None or any(p in scope for p in paths)

    @property
    def touched_blocks(self) -> set[str]:
        """The repeated blocks the user's plan adapts something in (empty without one)."""
        scope = self.scope or set()
        blocks = self.facts.graph.blocks
        return {b for b in (blocks.block_of(p) for p in scope) if b is not None}

    def reaching(self, paths: Iterable[str]) -> list[PlanEvaluation]:
        """The evaluations (the user's plan, or the common recipes) that reach any of ``paths``."""
        paths = set(paths)
        return [e for e in self.evaluations if paths & touched_paths(e)]

    @property
    def dead_entry(self) -> bool:
        """Whether an entry of the user's plan reaches nothing."""
        return self.user is not None and any(e.matches == 0 for e in self.user.entries)

    def outcome_of(self, config: Mapping[str, Any]) -> Outcome:
        """PEFT's outcome for a LoraConfig-shaped mapping (a suggested fix), run once per
        distinct configuration, with the training step of the adapted model (``checked``,
        ``step_error``: a fix whose step fails is not printed); time goes to the ``verify``
        and ``steps`` phases."""
        plan = Plan.from_mapping(dict(config), source="fix")
        key = ("fix", peft_input(plan))
        if key not in self.outcomes:
            with self.facts.timed("verify"):
                outcome = predict(self.facts.built.module, plan, outcomes=self.outcomes)
            step = self.step_of(plan, outcome)
            if step is not None:
                where = f" in {step.module}" if step.module else ""
                failure = None if step.ok else f"{step.stage}: {step.error}{where}"
                outcome = dataclasses.replace(outcome, checked=step.checked, step_error=failure)
            self.outcomes[key] = outcome
        return self.outcomes[key]

    def outcomes_of(self, configs: Iterable[Mapping[str, Any]]) -> list[Outcome]:
        """:meth:`outcome_of` of several fixes a rule suggests at once. When two or more are
        new and differ only in ``target_parameters``, the plan of their union is stepped
        first: a clean step of it implies each fix's own step wherever the fix adapts a
        subset of what it adapted (:meth:`archlint.lora.training_step.StepChecker.check`);
        when the union's step is not clean, each fix still gets its own step."""
        configs = [dict(c) for c in configs]
        new = {}
        for config in configs:
            key = ("fix", peft_input(Plan.from_mapping(config, source="fix")))
            if key not in self.outcomes:
                new.setdefault(key, config)
        union = _union(list(new.values())) if len(new) > 1 else None
        if union is not None:
            self.outcome_of(union)
        return [self.outcome_of(config) for config in configs]

    def step_of(self, plan: Plan, outcome: Outcome) -> StepCheck | None:
        """One training step of the model adapted by ``plan`` (None when PEFT did not inject
        it: refused, or not installed); time goes to the ``steps`` phase."""
        if not outcome.ok or outcome.engine != Engine.PEFT:
            return None
        checker = self.facts.training_steps
        adapted = self.outcomes.pop((ADAPTED_COPY, peft_input(plan)), None)  # PEFT's run on the shrunk copy
        with self.facts.timed("steps"):
            return checker.check(plan.lora_kwargs(), adapted=adapted)


def touched_paths(evaluation: PlanEvaluation) -> set[str]:
    """Every module a plan's entries reach (before PEFT's type dispatch), and the owners
    of the parameters it reaches."""
    out = set(evaluation.outcome.modules)
    out.update(p.rpartition(".")[0] for p in evaluation.outcome.parameters)
    for entry in evaluation.entries:
        out.update(entry.modules)
        out.update(p.rpartition(".")[0] for p in entry.parameters)
    return out


@fact(phase="plans")
def plans(facts: Facts) -> PlanFacts:
    """The user's plan evaluated, or else each common recipe. A plan PEFT cannot even be
    asked about leaves no evaluation and its error (the lint goes on)."""
    found = PlanFacts(facts, ModelIndex.of(facts.graph))
    found.outcomes[SHRUNK_COPY] = lambda: facts.shrunk_model  # PEFT runs there when that gives the same answer
    wanted = [facts.plan] if facts.plan is not None else common_recipes(facts.built.model_type)
    try:
        evaluations = [evaluate(facts.built.module, p, index=found.index, outcomes=found.outcomes) for p in wanted]
        steps = {i: found.step_of(evaluations[i].plan, evaluations[i].outcome) for i in _widest_first(evaluations)}
        found.evaluations = [dataclasses.replace(e, step=steps[i]) for i, e in enumerate(evaluations)]
    except Exception as e:
        found.error = one_line(e)
        found.exception = e
    return found


def _union(configs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The LoraConfig of every ``target_parameters`` of ``configs`` together, when they differ
    in nothing else; else None."""
    rest = [{k: v for k, v in c.items() if k != "target_parameters"} for c in configs]
    lists = [c.get("target_parameters") or [] for c in configs]
    if any(r != rest[0] for r in rest) or not all(isinstance(x, (list, tuple)) for x in lists):
        return None
    return {**rest[0], "target_parameters": sorted({p for x in lists for p in x})}


def _widest_first(evaluations: list[PlanEvaluation]) -> list[int]:
    """The order to step the evaluations in: the plan that wraps the most first. A plan that
    adapts a subset of what a clean step adapted is clean without a step of its own
    (:meth:`archlint.lora.training_step.StepChecker.check`), so stepping ``all-linear`` before
    the recipes it contains spares their steps; the outcomes do not depend on the order."""
    def width(i: int) -> int:
        outcome = evaluations[i].outcome
        return len(outcome.modules) + len(outcome.parameters)

    return sorted(range(len(evaluations)), key=lambda i: (-width(i), i))
