"""ATTN003 logit-softcapping."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class LogitSoftcapping(Rule):
    """Attention or final logits soft-capped (`tanh(x / c) * c`) by the config.

    What it does:
        Reads `attn_logit_softcapping` and `final_logit_softcapping` from the config and
        its sub-configs; when set, flags the attention modules, and the output head when
        the model's own forward applies the final cap (its source reads the key).

    Why is this bad:
        SDPA has no soft-capping term: transformers' SDPA attention raises on a cap
        ("`sdpa` attention does not support `softcap`"), so these models run eager
        attention, whose memory grows with the square of the sequence length;
        FlashAttention-2 supports the cap only from 2.6. A fused linear-cross-entropy
        loss that skips the final cap trains on other logits than the model computes.

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

    VALID = (Example("fixtures/zoo/hf_tiny.py:tiny_llama"),
             Example("fixtures/zoo/hf_tiny.py:tiny_llama_unused_cap", note="a config key the forward never reads"))
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
                    "transformers' SDPA attention raises on a cap, so this runs eager attention unless "
                    "FlashAttention-2 >= 2.6 is chosen",
                    module_class=group.representative.class_name,
                    fix=fix,
                    details={"softcapping": attn},
                )
        final = {k: v for k, v in ctx.config_values("final_logit_softcapping") if v}
        head = _output_head(ctx.graph.root)
        if final and head is not None and _forward_reads(ctx.graph.root, "final_logit_softcapping"):
            yield self.finding(
                [head],
                f"final logits are soft-capped ({', '.join(f'{k}={v}' for k, v in final.items())}); "
                f"fused cross-entropy kernels must apply the cap",
                module_class=type(ctx.graph.root.get_submodule(head)).__name__,
                fix=Fix("Keep the cap in any fused loss", "e.g. LigerFusedLinearCrossEntropyLoss(softcap=...)"),
                details={"softcapping": final},
            )


def _forward_reads(root, key: str) -> bool:
    """The model's own forward reads ``key`` from its config (a config key its class ignores
    caps nothing)."""
    import inspect

    try:
        return key in inspect.getsource(type(root).forward)
    except (OSError, TypeError):  # no source (a compiled or dynamic class): keep the config's word
        return True


def _output_head(root) -> str | None:
    get = getattr(root, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        return None
    return next((name for name, m in root.named_modules() if m is head), None)
