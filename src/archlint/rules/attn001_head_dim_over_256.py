"""ATTN001 head-dim-over-256."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule

FLASH_ATTENTION_MAX_HEAD_DIM = 256


class HeadDimOver256(Rule):
    """An attention layer whose head dimension exceeds 256.

    What it does:
        Reads `head_dim` from every attention module as built (per layer, so models
        whose global and sliding layers differ are read correctly) and flags those
        above 256.

    Why is this bad:
        FlashAttention-2/3 and fused attention kernels support head dimensions up to
        256: `RuntimeError: FlashAttention only supports head dimensions up to 256`.
        TransformerEngine disables FA3 for those layers.

    Example:
        Gemma-4 31B's full-attention layers use `global_head_dim=512`.

    Use instead:
        `attn_implementation="sdpa"` (or `"eager"`) for the model.

    References:
        https://github.com/Dao-AILab/flash-attention/issues/2427
    """

    code = "ATTN001"
    name = "head-dim-over-256"
    severity = Severity.WARNING
    tools = ("flash-attention", "transformer-engine")

    VALID = (Example("fixtures/zoo/towers.py:SingleTower"),)
    INVALID = (
        Example("fixtures/zoo/attention.py:WideHeads", paths=("layers.1.attn",), fix='attn_implementation="sdpa"'),
    )

    def check(self, ctx):
        groups = ctx.attention_modules
        for group in groups:
            head_dim = group.representative.module.head_dim
            cls = group.representative.cls
            dims = sorted({g.representative.module.head_dim for g in groups if g.representative.cls is cls})
            if head_dim <= FLASH_ATTENTION_MAX_HEAD_DIM:
                continue
            others = ", ".join(str(d) for d in dims if d != head_dim)
            varying = f" (other layers: {others})" if len(dims) > 1 else ""
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} has head_dim {head_dim} > {FLASH_ATTENTION_MAX_HEAD_DIM}{varying}; "
                f"FlashAttention-2/3 refuse it",
                module_class=group.representative.class_name,
                fix=Fix("Use SDPA or eager attention", 'from_pretrained(..., attn_implementation="sdpa")'),
                details={"head_dim": head_dim, "head_dims": dims},
            )
