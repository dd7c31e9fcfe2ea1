"""LORA003 linear-subclass-forward."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from ..lora.verify import exclusion_fix
from ..probe.extras import extra_ops, summarise
from ..skip_list import bnb_skip_advice
from ..source import overrides_forward
from .base import Example, Rule


class LinearSubclassForward(Rule):
    """An `nn.Linear` or `nn.Embedding` subclass that replaces `forward`.

    What it does:
        Flags subclasses of `nn.Linear`/`nn.Embedding` whose forward is not the plain
        affine map or lookup (routers with input jitter such as `PhimoeRouter` and
        `Llama4Router`, clamps, grouped linears). The overriding forward is recorded on
        meta tensors in training mode and every op beyond the affine map / lookup is
        named in the finding. A subclass that only adds attributes, or overrides
        `forward` without changing the computation (a clamp whose bounds are both
        infinite changes nothing), is not flagged; nor is an
        embedding whose only extra is a scalar `embed_scale`, which PEFT applies to the
        adapter output itself. When the forward cannot be probed, the override alone
        is reported at low confidence.

    Why is this bad:
        PEFT accepts the module because it *is* an `nn.Linear`, then calls the custom
        forward for the base output and adds a plain `x @ A @ B` delta that bypasses the
        extra logic; merging bakes the delta in with different semantics; a custom forward
        that returns a tuple (PhiMoE's and Llama-4's routers) makes the adapted forward
        raise. transformers' bitsandbytes integration converts only modules whose type is
        exactly `nn.Linear`, so a subclass stays unquantized (the finding says so when
        the installed transformers would convert it).

    Example:
        `class JitterRouter(nn.Linear): def forward(self, x): return super().forward(x * noise)`

    Use instead:
        Keep the module out of the adapters: each evaluated plan that adapts it, with its
        name in `exclude_modules`, run through PEFT and one training step. A skip list
        for bitsandbytes is printed only when transformers would convert the module, as
        transformers' default list plus the module (a user list replaces the defaults).

    References:
        PhimoeRouter and Llama4Router (Linear subclasses that route); scaled embeddings
    """

    code = "LORA003"
    name = "linear-subclass-forward"
    severity = Severity.WARNING
    reads_ahead = frozenset({"plans"})
    severity_note = "info when no evaluated plan or common recipe adapts the module and 4-bit quantization keeps it"
    confidence = Confidence.MEDIUM  # read from the probed forward
    tools = ("peft", "bitsandbytes")

    VALID = (
        Example("fixtures/zoo/subclasses.py:TaggedLinearModel", note="subclass adds an attribute only"),
        Example("fixtures/zoo/subclasses.py:ScaledEmbeddingModel", note="scalar embed_scale, which PEFT handles"),
        Example("fixtures/zoo/subclasses.py:CountingLinearModel", note="overrides forward, same computation"),
        Example("fixtures/zoo/roles.py:InfiniteClampModel", note="a clamp to [-inf, inf] is no clamp"),
    )
    INVALID = (
        Example("fixtures/zoo/subclasses.py:JitterRouterModel", paths=("layers.0.router", "layers.1.router"),
                fix="exclude_modules"),
        Example("fixtures/zoo/subclasses.py:ClampedLinearModel", paths=("layers.0.router", "layers.1.router"),
                fix="exclude_modules"),
    )

    def check(self, ctx):
        for group in ctx.graph.distinct(_custom_forward):
            if not ctx.plans.touches(group.paths):
                continue  # with a plan, only the modules it reaches
            info = group.representative
            base = "nn.Embedding" if isinstance(info.module, nn.Embedding) else "nn.Linear"
            result = ctx.probes.probe(info.module)
            extras = ctx.probes.read(info.module, extra_ops)
            if extras is not None:
                if not extras:
                    continue  # the override computes exactly the affine map / lookup
                plain = "lookup" if base == "nn.Embedding" else "affine map"
                what, confidence = f"its forward is not the plain {plain}: {summarise(extras)}", Confidence.MEDIUM
            else:
                extras, confidence = [], Confidence.LOW
                what = f"it overrides forward (not probed: {result.error or 'unreadable trace'})"
            advice = bnb_skip_advice(ctx.built.module, group.paths)
            swap = "; bitsandbytes' 4-bit swap drops it" if advice is not None else ""
            reached = ctx.plans.reaching(group.paths)
            bypass = ("a LoRA delta bypasses it" if reached or not ctx.plans.evaluations
                      else "a LoRA delta would bypass it, but no common recipe adapts it")
            yield self.finding(
                group.paths,
                f"{info.class_name} subclasses {base} but {what}; {bypass}{swap}",
                module_class=info.class_name,
                severity=None if reached or not ctx.plans.evaluations or advice is not None else Severity.INFO,
                confidence=confidence,
                fix=_fix(ctx, group.paths, advice),
                details={"base": base, "extra_ops": extras},
            )


def _fix(ctx, paths, advice) -> Fix | None:
    lora = exclusion_fix(ctx.plans.outcome_of, ctx.plans.evaluations, paths, "Keep it out of the adapters")
    lines = [advice.text()] if advice is not None else []
    if lora is not None:
        lines.append(lora.detail)
    if not lines:
        return None
    title = "Keep it out of " + " and ".join(
        part for part, present in (("quantization", advice is not None), ("the adapters", lora is not None)) if present)
    return Fix(title + (" (verified)" if lora is not None else ""), "\n".join(lines))


def _custom_forward(info) -> bool:
    module = info.module
    if isinstance(module, nn.Linear) and type(module) is not nn.Linear:
        return overrides_forward(type(module), nn.Linear)
    if isinstance(module, nn.Embedding) and type(module) is not nn.Embedding:
        if _scalar_embed_scale(module) and _peft_scales_embeddings():
            return False
        return overrides_forward(type(module), nn.Embedding)
    return False


def _scalar_embed_scale(module) -> bool:
    scale = getattr(module, "embed_scale", None)
    if isinstance(scale, (int, float)):
        return True
    return getattr(scale, "numel", lambda: 0)() == 1


def _peft_scales_embeddings() -> bool:
    """PEFT applies a scalar ``embed_scale`` to the LoRA embedding output (``_get_embed_scale``)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return False
    return hasattr(BaseTunerLayer, "_get_embed_scale")
