"""LORA006 stacked-expert-parameters."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Severity
from ..lora.recipes import label
from ..lora.verify import Candidate, reaches_all, verified_fix
from ..structure import target_parameters_for
from .base import Example, Rule


class StackedExpertParameters(Rule):
    """MoE experts stored as ≥3-D parameters, invisible to `target_modules`.

    What it does:
        Flags parameters with three or more dimensions whose leading dimension is the
        number of experts from the config (`num_experts`, `num_local_experts`,
        `n_routed_experts`, ...), such as `experts.gate_up_proj` of shape
        `[E, 2*I, H]`. Convolution kernels and position tables are never experts.

    Why is this bad:
        `target_modules` matches modules, and these experts are not modules: name-based
        LoRA silently adapts only the attention and dense layers, leaving most of the
        model's parameters frozen. bitsandbytes only swaps `nn.Linear`, so the experts
        stay in bf16 under `load_in_4bit` (Gemma-4 26B-A4B: ~46 GB "at 4-bit").
        For model types PEFT converts from the transformers-v4 layout, PEFT re-routes
        the names `gate_proj/up_proj/down_proj` to these parameters; the finding is then
        info.

    Example:
        `model.language_model.layers.*.experts.gate_up_proj` `[128, 1408, 2816]` on
        google/gemma-4-26B-A4B.

    Use instead:
        List the parameters in `target_parameters` (PEFT >= 0.17) with `lora_dropout=0`
        (PEFT's `ParamWrapper` refuses dropout); the fix prints the exact entries.

    References:
        https://github.com/huggingface/peft/pull/2638, https://github.com/Roblox/FAI-RL/pull/50
    """

    code = "LORA006"
    name = "stacked-expert-parameters"
    severity = Severity.ERROR
    reads_ahead = frozenset({"plans"})
    severity_note = "info when PEFT re-routes targets to the experts or the plan reaches them all"
    tools = ("peft", "bitsandbytes")

    VALID = (Example("fixtures/zoo/experts.py:PatchEmbedding", note="Conv2d weight and a 3-D position table"),)
    INVALID = (
        Example("fixtures/zoo/experts.py:StackedExperts",
                paths=("layers.0.experts", "layers.1.experts"),
                fix='target_parameters=["experts.gate_up_proj", "experts.down_proj"]'),
    )

    def check(self, ctx):
        by_group = defaultdict(list)
        for group, tensor in ctx.stacked_expert_parameters:
            by_group[group].append(tensor)
        if not by_group:
            return
        judge = _judging_evaluation(ctx)
        adapted = set(judge.outcome.parameters) if judge is not None and judge.ok else set()
        converted = _peft_converts(ctx.built.model_type)
        entries = target_parameters_for(ctx.parameter_paths, [(g, t.name) for g, ts in by_group.items() for t in ts])
        every_tensor = [f"{p}.{t.name}" for g, ts in by_group.items() for t in ts for p in g.paths]
        fix = verified_fix(ctx.plans.outcome_of, "Adapt the experts through target_parameters", [Candidate(
            "LoraConfig(target_parameters=[" + ", ".join(f'"{e}"' for e in entries) + "], lora_dropout=0.0, ...)",
            {"target_modules": [], "target_parameters": entries, "lora_dropout": 0.0},
            "every expert tensor", expect=reaches_all(every_tensor))])
        touched_blocks = ctx.plans.touched_blocks
        for group, tensors in by_group.items():
            blocks = {ctx.graph.blocks.block_of(p) for p in group.paths}
            if not (ctx.plans.touches(group.paths) or blocks & touched_blocks):
                continue  # with a plan: experts it reaches, or in a layer it adapts something in
            shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in tensors)
            tensor_paths = [f"{p}.{t.name}" for p in group.paths for t in tensors]
            if judge is not None and all(p in adapted for p in tensor_paths):
                severity = Severity.INFO
                how = ("PEFT re-routes gate_proj/up_proj/down_proj targets to them for this model type"
                       if judge.outcome.rerouted else "target_parameters reaches them")
                note = f"{how}: {label(judge.plan)} adapts every expert tensor (checked with PEFT)"
            elif judge is None and all(t.name in converted for t in tensors):
                severity = Severity.INFO
                note = "PEFT re-routes gate_proj/up_proj/down_proj targets to them for this model type"
            else:
                severity = self.severity
                note = "target_modules never reaches them and bitsandbytes leaves them unquantized"
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} stores {tensors[0].shape[0]} experts as stacked parameters "
                f"({shapes}); {note}",
                module_class=group.representative.class_name,
                severity=severity,
                fix=fix,
                details={"parameters": {t.name: list(t.shape) for t in tensors}, "target_parameters": entries},
            )


def _judging_evaluation(ctx):
    """The evaluation that says whether the experts are adapted: the user's plan, else
    the seven-standard-names recipe (the one that names gate/up/down)."""
    for evaluation in ctx.plans.evaluations:
        if ctx.plan is not None or evaluation.plan.source == "recipe:seven":
            return evaluation
    return None


def _peft_converts(model_type: str | None) -> set[str]:
    """Expert parameter names PEFT's transformers-v5 MoE conversion reaches for this type."""
    try:
        from peft.utils.transformers_weight_conversion import (
            _MODEL_TO_CONVERSION_PATTERN,
            _MOE_TARGET_MODULE_MAPPING,
        )
    except ImportError:
        return set()
    base = _MODEL_TO_CONVERSION_PATTERN.get(model_type)
    return set((_MOE_TARGET_MODULE_MAPPING.get(base) or {}).values()) if base else set()
