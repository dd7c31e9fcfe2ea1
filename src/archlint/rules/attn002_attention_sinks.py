"""ATTN002 attention-sinks."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class AttentionSinks(Rule):
    """Learned attention-sink logits, or a model that declares no SDPA support.

    What it does:
        Flags attention modules that own a `sinks` parameter (one learned logit per
        head, appended to the scores before softmax, as in gpt-oss), and models whose
        class sets `_supports_sdpa = False`.

    Why is this bad:
        SDPA and FlashAttention-2 have no sink term: transformers falls back to eager
        attention, whose memory grows with the square of the sequence length, and
        long-context training runs out of memory. Forcing `sdpa` is ignored.

    Example:
        `GptOssAttention.sinks`, shape `[num_heads]`.

    Use instead:
        `attn_implementation="eager"` for short contexts, or a sink-aware kernel
        (`attn_implementation="kernels-community/vllm-flash-attn3"` on Hopper).

    References:
        https://github.com/Dao-AILab/flash-attention/issues/1797, https://github.com/unslothai/unsloth/issues/3142
    """

    code = "ATTN002"
    name = "attention-sinks"
    severity = Severity.WARNING
    tools = ("sdpa", "flash-attention")

    VALID = (Example("fixtures/zoo/towers.py:SingleTower"),)
    INVALID = (
        Example("fixtures/zoo/params.py:SinkAttention", paths=("layers.0.attn", "layers.1.attn"),
                fix="kernels-community/vllm-flash-attn3"),
    )

    def check(self, ctx):
        fix = Fix(
            "Use eager attention, or a sink-aware kernel",
            'from_pretrained(..., attn_implementation="kernels-community/vllm-flash-attn3")  # Hopper; else "eager"',
        )
        found = False
        for group in ctx.graph.distinct(lambda i: "sinks" in i.parameters):
            found = True
            shape = list(group.representative.parameters["sinks"].shape)
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} adds learned sink logits {shape} to the attention scores; "
                f"SDPA and FlashAttention-2 cannot compute them",
                module_class=group.representative.class_name,
                fix=fix,
                details={"sinks_shape": shape},
            )
        root = ctx.graph.root
        if not found and _declares_no_sdpa(root) and ctx.attention_modules:
            flash = getattr(type(root), "_supports_flash_attn", False)
            yield self.finding(
                [""],
                f"{type(root).__name__} declares _supports_sdpa = False; transformers runs eager attention, "
                f"whose memory grows with the square of the sequence length",
                module_class=type(root).__name__,
                fix=Fix(
                    "Plan memory for eager attention" + (", or use FlashAttention-2" if flash else ""),
                    'from_pretrained(..., attn_implementation="flash_attention_2")' if flash
                    else 'from_pretrained(..., attn_implementation="eager")  # the only supported backend',
                ),
            )


def _declares_no_sdpa(root) -> bool:
    from transformers import PreTrainedModel

    return isinstance(root, PreTrainedModel) and not getattr(type(root), "_supports_sdpa", False)
