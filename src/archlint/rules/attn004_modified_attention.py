"""ATTN004 modified-attention."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..probe.roles import Role
from .base import Example, Rule


class ModifiedAttention(Rule):
    """Attention that computes more than softmax(q·kᵀ·scale + mask)·v on its projections.

    What it does:
        Records each attention module's forward on meta tensors once, finds the attention
        core by data flow (SDPA, or an eager `matmul -> softmax -> matmul`) and which
        values reach its q, k and v operands, and reports what a stock attention
        implementation would not reproduce: queries multiplied by a factor computed from
        positions (attention temperature tuning), values scaled by a constant or a
        learned tensor before the core, and scores masked by a top-k selection of keys
        made by an indexer (sparse attention). Rotary tables, q/k norms and the usual
        `1/sqrt(d)` scale are not reported.

    Why is this bad:
        Serving stacks, converters and kernel patchers that re-implement the attention
        from the config (vLLM, llama.cpp, MLX, a FlashAttention swap of the whole module)
        keep q·kᵀ, softmax and ·v and silently drop the rest: long-context outputs drift
        without temperature tuning, scaled values change every output, and dense
        attention over all keys is a different function from top-k sparse attention.

    Example:
        Llama-4 scales its queries by `log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1`
        on NoPE layers; DeepSeek-V3.2 attends only to the keys its indexer's top-k selects.

    Use instead:
        A runtime or converter that implements the change (check its support for the
        model type), or the model's own eager attention.

    References:
        https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama4/modeling_llama4.py,
        https://github.com/huggingface/transformers/blob/main/src/transformers/models/deepseek_v32/modeling_deepseek_v32.py
    """

    code = "ATTN004"
    name = "modified-attention"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    tools = ("vllm", "gguf", "mlx", "flash-attention")

    VALID = (Example("fixtures/zoo/roles.py:QGateAttentionModel",
                     note="an output gate is GATE002's, not a changed core"),)
    INVALID = (
        Example("fixtures/zoo/roles.py:TemperatureAttentionModel", paths=("layers.0.self_attn", "layers.1.self_attn"),
                fix="temperature"),
        Example("fixtures/zoo/roles.py:ScaledValueAttentionModel", paths=("layers.0.self_attn", "layers.1.self_attn"),
                fix="v_scale"),
        Example("fixtures/zoo/roles.py:IndexedSparseAttentionModel", paths=("layers.0.self_attn", "layers.1.self_attn"),
                fix="index_q"),
    )

    def check(self, ctx):
        roles = ctx.roles
        for group in ctx.attention_modules:
            reading = roles.block_roles(group.representative.path)
            if reading is None or not reading.attention_changes:
                continue
            info = group.representative
            indexers = sorted({p.projection for p in reading.parts if p.role is Role.INDEXER})
            changes = list(reading.attention_changes)
            yield self.finding(
                group.paths,
                f"{info.class_name} changes the attention function: {'; '.join(changes)}",
                module_class=info.class_name,
                fix=Fix("Run it with an implementation that reproduces these changes, or the model's eager attention",
                        "\n".join(changes + ([f"indexer projections: {', '.join(indexers)}"] if indexers else []))),
                details={"changes": changes, "indexer": indexers},
            )
