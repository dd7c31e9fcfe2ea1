"""GATE002 gated-attention-output."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..lora.recipes import broken_recipes
from ..probe.roles import Role
from .base import Example, Rule


class GatedAttentionOutput(Rule):
    """Attention whose output is multiplied by a learned, input-dependent gate.

    What it does:
        Records each attention module's forward on meta tensors (with synthesised
        rotary position embeddings) once and reads the roles of its projections from
        the data flow: a projection output (or a slice of one) that passes through
        `sigmoid`/`tanh`/`silu` and is multiplied into the attention core's output is an
        output gate -- the gated-attention and hybrid-model pattern
        (`o_proj(attn * sigmoid(gate))`). The finding names the gate's activation, the
        projection it comes from, and what else that projection computes (Qwen3-Next
        cuts the query and the gate from one `q_proj`).

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
        roles = ctx.roles
        for group in ctx.attention_modules:
            reading = roles.block_roles(group.representative.path)
            if reading is None or not reading.attention:
                continue
            gates = [g for g in reading.output_gates if g[2] == "the attention output"]
            if not gates:
                continue
            info = group.representative
            projection, activation, _ = gates[0]
            parts = [p for p in reading.of(projection)]
            shares = [p.role.value for p in parts if p.role is not Role.OUTPUT_GATE]
            gate_paths = [f"{p}.{projection}" for p in group.paths]
            reached = broken_recipes(gate_paths, ctx.built.model_type)
            cut = f" (cut from the same output as {' and '.join(shares)})" if shares else ""
            yield self.finding(
                group.paths,
                f"{info.class_name} multiplies its attention output by {activation}(gate), the gate computed by "
                f"`{projection}`{cut}; kernels and converters that assume a plain o_proj(attn) drop it",
                module_class=info.class_name,
                fix=Fix("Use an attention kernel/converter that implements the output gate; decide whether the "
                        "gate projection is adapted",
                        f"gate projection: {projection}; reached by: {', '.join(reached) or 'no common recipe'}"),
                details={"activation": activation, "gate_projection": projection, "reached_by": reached,
                         "roles": [p.to_dict() for p in parts]},
            )
