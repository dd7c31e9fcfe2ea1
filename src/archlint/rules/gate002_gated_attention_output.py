"""GATE002 gated-attention-output."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..lora.recipes import broken_recipes
from .base import Example, Rule


class GatedAttentionOutput(Rule):
    """Attention whose output is multiplied by a learned, input-dependent gate.

    What it does:
        Records each attention module's forward on meta tensors (with synthesised
        rotary position embeddings) and looks, after the attention core (SDPA or the
        last softmax), for a product of the attention output with `sigmoid`/`tanh`/
        `silu` of a value computed from the input alone -- the gated-attention and
        hybrid-model pattern (`attn * sigmoid(gate)` before `o_proj`). The finding
        names the gate's activation and the projection the gate comes from.

    Why is this bad:
        Attention-kernel patchers and converters assume a plain `o_proj(attn)` and
        drop the gate; when the gate is cut from `q_proj`'s output, `q_proj` is twice
        the width a converter expects, and LoRA recipes that adapt `q_proj` adapt the
        gate too, while a separate gate projection is reached by no common recipe.

    Example:
        Qwen3-Next's full-attention layers cut a gate from `q_proj` and return
        `o_proj(attn * sigmoid(gate))`.

    Use instead:
        Use a kernel or converter that implements the output gate, and decide whether
        the gate projection is adapted: the finding lists it and the recipes reaching it.

    References:
        https://arxiv.org/abs/2505.06708 (gated attention);
        https://github.com/huggingface/transformers/blob/main/src/transformers/models/qwen3_next/modeling_qwen3_next.py
    """

    code = "GATE002"
    name = "gated-attention-output"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    tools = ("flash-attn", "vllm", "gguf", "peft")

    VALID = (Example("fixtures/zoo/gates.py:PlainAttentionModel"),)
    INVALID = (
        Example("fixtures/zoo/gates.py:GatedAttentionModel", paths=("layers.0.attn", "layers.1.attn"),
                fix="g_proj"),
    )

    def check(self, ctx):
        for group in ctx.attention_modules:
            gate = ctx.probes.output_gate(group.representative.module)
            if gate is None:
                continue
            info = group.representative
            source = gate.projection.removesuffix(".weight") if gate.projection else None
            gate_paths = [f"{p}.{source}" for p in group.paths] if source else []
            reached = broken_recipes(gate_paths, ctx.built.model_type) if gate_paths else []
            where = f"computed by `{source}`" if source else "computed from the input"
            yield self.finding(
                group.paths,
                f"{info.class_name} multiplies its attention output by {gate.activation}(gate), the gate {where}; "
                f"kernels and converters that assume a plain o_proj(attn) drop it",
                module_class=info.class_name,
                fix=Fix("Use an attention kernel/converter that implements the output gate; decide whether the "
                        "gate projection is adapted",
                        f"gate projection: {source or '(inline)'}; "
                        f"reached by: {', '.join(reached) or 'no common recipe'}"),
                details={"activation": gate.activation, "gate_projection": source, "reached_by": reached},
            )
