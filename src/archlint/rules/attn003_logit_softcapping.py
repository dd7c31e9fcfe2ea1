"""ATTN003 logit-softcapping."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class LogitSoftcapping(Rule):
    """Attention or final logits soft-capped (`tanh(x / c) * c`) by the config.

    What it does:
        Reads `attn_logit_softcapping` and `final_logit_softcapping` from the config and
        its sub-configs; when set, flags the attention modules (or the output head).

    Why is this bad:
        SDPA has no soft-capping term, so an SDPA run computes different attention than
        the model was trained with; FlashAttention-2 supports it only from 2.6.

    Example:
        Gemma-2: `attn_logit_softcapping=50.0`, `final_logit_softcapping=30.0`.

    Use instead:
        `attn_implementation="eager"`, or `"flash_attention_2"` with flash-attn >= 2.6.

    References:
        Gemma-2's `attn_logit_softcapping` and `final_logit_softcapping` config keys
    """

    code = "ATTN003"
    name = "logit-softcapping"
    severity = Severity.WARNING
    tools = ("sdpa", "flash-attention")

    VALID = (Example("fixtures/zoo/hf_tiny.py:tiny_llama"),)
    INVALID = (
        Example("fixtures/zoo/hf_tiny.py:tiny_gemma2",
                paths=("model.layers.0.self_attn", "model.layers.1.self_attn", "lm_head"), fix="flash-attn >= 2.6"),
    )

    def check(self, ctx):
        fix = Fix("Use eager attention, or FlashAttention-2 >= 2.6",
                  'from_pretrained(..., attn_implementation="eager")  # or "flash_attention_2" with flash-attn >= 2.6')
        attn = {k: v for k, v in ctx.config_values("attn_logit_softcapping") if v}
        if attn:
            for group in ctx.attention_modules:
                yield self.finding(
                    group.paths,
                    f"attention logits are soft-capped ({', '.join(f'{k}={v}' for k, v in attn.items())}); "
                    f"SDPA ignores the cap",
                    module_class=group.representative.class_name,
                    fix=fix,
                    details={"softcapping": attn},
                )
        final = {k: v for k, v in ctx.config_values("final_logit_softcapping") if v}
        head = _output_head(ctx.graph.root)
        if final and head is not None:
            yield self.finding(
                [head],
                f"final logits are soft-capped ({', '.join(f'{k}={v}' for k, v in final.items())}); "
                f"fused cross-entropy kernels must apply the cap",
                module_class=type(ctx.graph.root.get_submodule(head)).__name__,
                fix=Fix("Keep the cap in any fused loss", "e.g. LigerFusedLinearCrossEntropyLoss(softcap=...)"),
                details={"softcapping": final},
            )


def _output_head(root) -> str | None:
    get = getattr(root, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        return None
    return next((name for name, m in root.named_modules() if m is head), None)
