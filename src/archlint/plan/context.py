"""The plan evaluations of one lint, computed once and shared by the rules and the report.

With a user plan (``ctx.plan``) that plan is evaluated; without one, the common recipes
are (issue #5 point 3).
"""

from __future__ import annotations

from .evaluate import SHRUNK_COPY, ModelIndex, PlanEvaluation, evaluate
from .recipes import common_recipes


def model_index(ctx) -> ModelIndex:
    return ctx.memo("plan_model_index", lambda: ModelIndex.of(
        ctx.built.module, towers={info.path: info.tower for info in ctx.graph}))


def outcomes(ctx) -> dict:
    """PEFT's outcomes on this lint's model, by PEFT input (:func:`.evaluate.predict`), shared by
    the plan evaluations and the verified fixes; with the way to the model's shrunk copy,
    made on first use, on which PEFT runs when that gives the same answer."""
    def shrunk():
        from ..shrink import shrunk_copy

        return ctx.memo("plan_shrunk_copy", lambda: shrunk_copy(ctx))

    return ctx.memo("plan_outcomes", lambda: {SHRUNK_COPY: shrunk})


def plan_evaluations(ctx) -> list[PlanEvaluation]:
    """The user's plan evaluated, or else each common recipe."""

    def compute():
        plans = [ctx.plan] if ctx.plan is not None else common_recipes(ctx.built.model_type)
        index = model_index(ctx)
        with ctx.timed("plans"):
            return [evaluate(ctx.built.module, p, index=index, outcomes=outcomes(ctx)) for p in plans]

    return ctx.memo("plan_evaluations", compute)


def user_plan(ctx) -> PlanEvaluation | None:
    """The evaluation of the user's plan, or None when only recipes were evaluated."""
    return plan_evaluations(ctx)[0] if ctx.plan is not None else None


def plan_scope(ctx) -> set[str] | None:
    """The modules the user's plan reaches, which a fix for that plan must stay within;
    None without a plan (the fix then covers every module the finding is about)."""
    evaluation = user_plan(ctx)
    return None if evaluation is None else touched_paths(evaluation)


def touched_paths(evaluation: PlanEvaluation) -> set[str]:
    """Every module a plan's entries reach (before PEFT's type dispatch), and the owners
    of the parameters it reaches."""
    out = set(evaluation.outcome.modules)
    out.update(p.rpartition(".")[0] for p in evaluation.outcome.parameters)
    for entry in evaluation.entries:
        out.update(entry.modules)
        out.update(p.rpartition(".")[0] for p in entry.parameters)
    return out
