"""LORA011 target-matches-nothing."""

from __future__ import annotations

import difflib

from ..findings import Severity
from ..lora.layers import is_lora_layer
from ..lora.targets import parameters_reached
from ..lora.verify import Candidate, verified_fix
from .base import Example, Rule


class TargetMatchesNothing(Rule):
    """A plan entry that matches no module (or no parameter).

    What it does:
        With a plan, flags each `target_modules` entry that matches no module of the
        model, and each `target_parameters` entry that reaches no parameter, and names
        the closest existing names.

    Why is this bad:
        PEFT only raises when *every* entry fails; a misspelt or foreign name (`qkv_proj`
        on a model with `q_proj`, Llama names on GPT-2) is silently dropped and the
        adapter is smaller than planned.

    Example:
        `LoraConfig(target_modules=["q_proj", "v_porj"])`: `v_porj` matches nothing.

    Use instead:
        The closest existing name, as printed (the corrected plan is verified with PEFT).

    References:
        https://github.com/huggingface/peft/issues/3693, https://github.com/huggingface/peft/issues/1959
    """

    code = "LORA011"
    name = "target-matches-nothing"
    severity = Severity.WARNING
    reads_ahead = frozenset({"plans"})
    tools = ("peft",)

    VALID = (Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "o_proj"]}),)
    INVALID = (
        Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "v_porj"]},
                paths=(), fix='"v_proj"'),
    )

    def check(self, ctx):
        evaluation = ctx.plans.user
        if evaluation is None:
            return
        names = _names(ctx)
        for entry in evaluation.entries:
            if entry.matches:
                continue
            close = difflib.get_close_matches(entry.entry.rsplit(".", 1)[-1], names, n=3, cutoff=0.5)
            yield self.finding(
                (),
                f"target_modules entry `{entry.entry}` matches no module"
                + (f"; closest names: {', '.join(close)}" if close else ""),
                module_class="",
                pattern=entry.entry,
                fix=_fix(ctx, evaluation, entry.entry, close),
                details={"entry": entry.entry, "closest": close},
            )
        params = sorted({f"{i.path}.{n}".rsplit(".", 2)[-2] + "." + n
                         for i in ctx.graph for n in i.parameters if "." in f"{i.path}.{n}"})
        for entry in evaluation.plan.target_parameters:
            if parameters_reached(ctx.parameter_paths, [entry]):
                continue
            close = difflib.get_close_matches(entry, params, n=3, cutoff=0.5)
            yield self.finding(
                (), f"target_parameters entry `{entry}` reaches no parameter"
                + (f"; closest names: {', '.join(close)}" if close else ""),
                module_class="", pattern=entry, details={"entry": entry, "closest": close},
            )


def _names(ctx) -> list[str]:
    """Leaf names, adaptable ones first (a closest match should be something PEFT wraps)."""
    linear = sorted({i.leaf_name for i in ctx.graph if i.path and is_lora_layer(i.module)})
    other = sorted({i.leaf_name for i in ctx.graph if i.path and not i.leaf_name.isdigit()} - set(linear))
    return linear + other


def _fix(ctx, evaluation, entry, close):
    if not close or isinstance(evaluation.plan.target_modules, str):
        return None
    plan = evaluation.plan.to_mapping()
    candidates = []
    for name in close[:1]:
        fixed = [name if e == entry else e for e in evaluation.plan.entries]
        candidates.append(Candidate("target_modules=[" + ", ".join(f'"{e}"' for e in fixed) + "]",
                                    {**plan, "target_modules": fixed}, f"`{entry}` -> `{name}`"))
    return verified_fix(ctx.plans.outcome_of, "Use an existing name", candidates)
