"""GATE003 custom-router."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from ..lora.layers import is_linear_like
from ..lora.verify import exclusion_fix
from ..skip_list import bnb_skip_advice
from .base import Example, Rule


class CustomRouter(Rule):
    """A MoE router that does more than Linear + softmax/top-k.

    What it does:
        Finds modules that project to the number of experts (their own weight or one
        Linear child) and records their forward on meta tensors. A router is a
        projection followed by `topk`; what it does beyond the projection, softmax,
        top-k and renormalising the top-k weights is listed: normalising its input,
        extra parameters or buffers (`scale`, `per_expert_scale`,
        `e_score_correction_bias`), sigmoid scores, group-limited routing (several
        top-k), constant scaling, random jitter, masking.

    Why is this bad:
        Quantizers treat a router as a plain Linear and quantize it, or leave its extra
        parameters in a different precision; DeepSpeed bf16 casts fp32 routing
        buffers; `all-linear` LoRA adapts the projection inside it. Each perturbs
        routing, which is far more sensitive than an ordinary projection.

    Example:
        Gemma-4's `Gemma4TextRouter` RMS-normalises its input, scales it by a learned
        vector and by `hidden_size**-0.5`, and rescales the top-k weights per expert;
        DeepSeek-V3's router adds `e_score_correction_bias` to sigmoid scores and picks
        groups first. Mixtral's router is plain.

    Use instead:
        Keep the router out of quantization and adapters. The skip list printed is
        transformers' own default list (``get_modules_to_not_convert`` on the meta model:
        `lm_head`, tied and fp32 modules) plus the router's Linears, because a user list
        replaces the defaults; it is printed only when bitsandbytes would convert the
        router (a router with its own weight parameter, or a Linear subclass, is left
        unquantized by transformers anyway). The LoRA half is each evaluated plan that
        adapts the router, with the router excluded, run through PEFT and one training step.

    References:
        https://github.com/huggingface/transformers/pull/35926
    """

    code = "GATE003"
    name = "custom-router"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    tools = ("bitsandbytes", "deepspeed", "peft")

    VALID = (Example("fixtures/zoo/gates.py:PlainRouterModel", note="Linear + softmax + top-k + renormalise"),)
    INVALID = (
        Example("fixtures/zoo/gates.py:NormedScaledRouterModel", paths=("layers.0.router", "layers.1.router")),
    )

    def check(self, ctx):
        counts = ctx.expert_counts
        if not counts:
            return
        for group in ctx.graph.distinct(lambda i: _projects_to_experts(ctx, i, counts)):
            router = ctx.probes.router(group.representative.module)
            if router is None or not router.extras:
                continue
            info = group.representative
            yield self.finding(
                group.paths,
                f"{info.class_name} routes with more than Linear + softmax/top-k: {'; '.join(router.extras)}",
                module_class=info.class_name,
                fix=_fix(ctx, group.paths),
                details={"extras": list(router.extras), "projection": router.projection.weight},
            )


def _fix(ctx, paths) -> Fix | None:
    """A bitsandbytes skip list that keeps the router's Linears unquantized (transformers'
    defaults kept; none when bitsandbytes would not convert them anyway), and the plans
    that adapt the router with the router excluded (verified); None when neither applies."""
    lines = []
    advice = bnb_skip_advice(ctx.built.module, paths)
    if advice is not None:
        lines.append(advice.text())
    lora = exclusion_fix(ctx.plans.outcome_of, ctx.plans.evaluations, paths, "Keep the router out of the adapters")
    if lora is not None:
        lines.append(lora.detail)
    if not lines:
        return None
    title = "Keep the router out of " + " and ".join(
        part for part, present in (("quantization", advice is not None), ("adapters", lora is not None)) if present)
    return Fix(title + (" (verified)" if lora is not None else ""), "\n".join(lines))


def _projects_to_experts(ctx, info, counts) -> bool:
    """Owns a 2-D weight, or holds a Linear child, whose output size is an expert count."""
    if type(info.module) in (nn.Linear,):
        return False  # a plain Linear: the routing around it belongs to its parent
    if any(t.ndim >= 3 for t in info.parameters.values()):
        return False
    if any(t.ndim == 2 and t.shape[0] in counts for t in info.parameters.values()):
        return True
    children = [ctx.graph.info(c) for c in info.children.values()]
    return len(children) <= 3 and all(c.is_leaf for c in children) and any(
        is_linear_like(c.module) and getattr(c.module, "out_features", None) in counts for c in children
    )
