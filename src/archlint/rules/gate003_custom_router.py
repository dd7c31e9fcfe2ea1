"""GATE003 custom-router."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Confidence, Fix, Severity
from ..lora.layers import is_linear_like
from ..lora.verify import exclusion_fix
from ..skip_list import bnb_skip_advice
from .base import Example, Rule


class CustomRouter(Rule):
    """A MoE router that does more than Linear + softmax/top-k.

    What it does:
        Records each MoE block's forward on meta tensors once and finds its routers by
        data flow: a projection whose output is scored into a top-k / argmax selection,
        or whose scores are gathered at experts chosen by a token-id table (hash
        routing). What it does beyond the projection, softmax, top-k and renormalising
        the top-k weights is listed: normalising its input, extra parameters or buffers
        (`scale`, `per_expert_scale`, `e_score_correction_bias` -- also when the parent
        block passes it in), sigmoid scores, a bias added by the caller, group-limited
        routing (several top-k), constant scaling, random jitter, masking, and selection
        by a table lookup instead of the scores.

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
    reads_ahead = frozenset({"plans"})
    confidence = Confidence.MEDIUM
    tools = ("bitsandbytes", "deepspeed", "peft")

    VALID = (Example("fixtures/zoo/gates.py:PlainRouterModel", note="Linear + softmax + top-k + renormalise"),)
    INVALID = (
        Example("fixtures/zoo/gates.py:NormedScaledRouterModel", paths=("layers.0.router", "layers.1.router")),
    )

    def check(self, ctx):
        if not ctx.expert_sizes:
            return
        roles = ctx.roles
        found: dict[tuple, list[str]] = defaultdict(list)
        for block in roles.blocks():
            reading = roles.block_roles(block)
            for router in reading.routers if reading else ():
                if router.selection == "top-k" and not router.extras:
                    continue  # Linear + softmax/top-k (+ renormalise): plain
                path = router_module(ctx, block, router.projection)
                info = ctx.graph.info(path)
                extras = tuple(_relative(extra, block, path) for extra in router.extras)
                found[(info.class_name, router.selection, extras, router.projection)].append(path)
        for (class_name, selection, extras, projection), paths in found.items():
            how = "routes by a token-id table (hash routing)" if selection == "hash" else \
                "routes with more than Linear + softmax/top-k"
            yield self.finding(
                sorted(set(paths)),
                f"{class_name} {how}: {'; '.join(extras)}",
                module_class=class_name,
                fix=_fix(ctx, sorted(set(paths))),
                details={"extras": list(extras), "selection": selection, "projection": projection},
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


def _relative(extra: str, block: str, router: str) -> str:
    """A tensor the trace names under the block, named under the router -- or said to come
    from the enclosing block, which passes it in (a correction bias the MoE block owns)."""
    if not extra.startswith("uses ") or "`" not in extra:
        return extra
    head, name, tail = extra.split("`", 2)
    full = f"{block}.{name}" if block else name
    if full.startswith(router + "."):
        return f"{head}`{full[len(router) + 1:]}`{tail}"
    return f"{head}`{name}`{tail} of the enclosing block (passed in by the parent)"


def router_module(ctx, block: str, projection: str) -> str:
    """The module a router finding names: the projection's own module, or the small
    module wrapping it when that is all the wrapper holds (a router class around one Linear)."""
    if projection == "weight":
        return block
    path = f"{block}.{projection}" if block else projection
    try:
        info = ctx.graph.info(path)
    except KeyError:
        return path.rpartition(".")[0]
    parent = ctx.graph.parent(path)
    if is_linear_like(info.module) and parent is not None and parent.path:
        linears = [m for m in parent.module.modules() if is_linear_like(m)]
        stacked = any(p.ndim >= 3 for p in parent.module.parameters())
        if linears == [info.module] and not stacked:
            return parent.path
    return path
