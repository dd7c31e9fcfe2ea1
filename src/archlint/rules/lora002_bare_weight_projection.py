"""LORA002 bare-weight-projection."""

from __future__ import annotations

from ..findings import Confidence, Severity
from ..lora.layers import is_lora_layer
from ..lora.recipes import broken_recipes
from ..lora.verify import Candidate, reaches_all, verified_fix
from ..source import projected_attributes
from ..structure import target_parameters_for
from .base import Example, Rule


class BareWeightProjection(Rule):
    """A module that projects with its own ≥2-D parameter instead of an `nn.Linear`.

    What it does:
        Flags modules that are not a PEFT layer type and whose `forward` feeds one of
        their own 2-D parameters to `F.linear`, `matmul`, `einsum` or `@` (read from the
        source of `forward`): routers with a raw `weight`, hand-rolled projections.
        Stacked expert tensors are left to LORA006.

    Why is this bad:
        PEFT cannot wrap the module: a `target_modules` entry that reaches it raises
        "Target module ... is not supported", and `all-linear` skips it silently.
        bitsandbytes only swaps `nn.Linear`, so the weight stays in high precision.

    Example:
        `MixtralTopKRouter` computes `F.linear(hidden_states, self.weight)`.

    Use instead:
        Adapt the parameter itself with `target_parameters` (PEFT >= 0.17), or refactor
        the module to hold an `nn.Linear`. Routers are best left frozen.

    References:
        https://github.com/huggingface/peft/pull/2638 (target_parameters)
    """

    code = "LORA002"
    name = "bare-weight-projection"
    severity = Severity.WARNING
    reads_ahead = frozenset({"plans"})
    severity_note = "info when no common recipe or plan reaches the module"
    confidence = Confidence.MEDIUM  # read from the source of forward
    tools = ("peft", "bitsandbytes")

    VALID = (
        Example("fixtures/zoo/towers.py:PlainTowers"),
        Example("fixtures/zoo/experts.py:PatchEmbedding", note="Conv2d patch embedding and a position table"),
    )
    INVALID = (
        Example("fixtures/zoo/bare.py:BareProjectionModel", paths=("blocks.0.proj", "blocks.1.proj"),
                fix="target_parameters"),
    )

    def check(self, ctx):
        experts = {(g.pattern, t.name) for g, t in ctx.stacked_expert_parameters}
        for group in ctx.graph.distinct(lambda i: bool(i.parameters) and not is_lora_layer(i.module)):
            info = group.representative
            used = projected_attributes(info.cls)
            params = sorted(
                n for n, t in info.parameters.items()
                if t.ndim >= 2 and n in used and (group.pattern, n) not in experts
            )
            if not params or not ctx.plans.touches(group.paths):
                continue  # with a plan, only the modules it reaches
            if ctx.plan is not None:  # the plan reaches it (touches above): speak of the plan
                recipes, severity = [], Severity.WARNING
                breaks = f"; your LoRA plan ({ctx.plan.source}) reaches it and PEFT will raise"
            else:
                recipes = broken_recipes(group.paths, ctx.built.model_type)
                severity = Severity.WARNING if recipes else Severity.INFO
                breaks = f"; the {', '.join(recipes)} recipe reaches it and PEFT will raise" if recipes else ""
            entries = target_parameters_for(ctx.parameter_paths, [(group, p) for p in params])
            yield self.finding(
                group.paths,
                f"{info.class_name} projects with its own parameter{'s' if len(params) > 1 else ''} "
                f"{', '.join(params)} (not an nn.Linear){breaks}",
                module_class=info.class_name,
                severity=severity,
                fix=verified_fix(ctx.plans.outcome_of, "Adapt the parameter with target_parameters, "
                                 "or keep the module out of target_modules", [
                    Candidate("target_parameters=[" + ", ".join(f'"{e}"' for e in entries) + "]",
                              {"target_modules": [], "target_parameters": entries},
                              expect=reaches_all([f"{p}.{n}" for p in group.paths for n in params]))]),
                details={"parameters": params, "breaks_recipes": recipes},
            )
