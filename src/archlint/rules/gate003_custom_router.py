"""GATE003 custom-router."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from ..lora.layers import is_linear_like
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
        Keep the router out of quantization and adapters, by its module paths.

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
        Example("fixtures/zoo/gates.py:NormedScaledRouterModel", paths=("layers.0.router", "layers.1.router"),
                fix='llm_int8_skip_modules=["router"]'),
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
            leaf = info.leaf_name
            yield self.finding(
                group.paths,
                f"{info.class_name} routes with more than Linear + softmax/top-k: {'; '.join(router.extras)}",
                module_class=info.class_name,
                fix=Fix("Keep the router out of quantization and adapters",
                        f'BitsAndBytesConfig(llm_int8_skip_modules=["{leaf}"], ...)\n'
                        f'LoraConfig(exclude_modules=["{leaf}"], ...)  # or a target regex that skips it'),
                details={"extras": list(router.extras), "projection": router.projection.weight},
            )


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
