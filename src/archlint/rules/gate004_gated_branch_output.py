"""GATE004 gated-branch-output."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Confidence, Fix, Severity
from ..lora.recipes import broken_recipes
from .base import Example, Rule


class GatedBranchOutput(Rule):
    """A block branch (a shared expert, an MLP) whose output a learned gate scales per token.

    What it does:
        Records each block's forward (the parts of every repeated layer) on meta tensors
        once and reads the roles of its projections from the data flow: a projection of
        the block's input that passes through `sigmoid`/`tanh`/`silu` and is multiplied
        into the output of another projection branch is an output gate. An activation
        written out as a product of its own input (CLIP's `x·σ(1.702x)`, the tanh form of
        GELU) is no gate, nor is `act(a(x)) · b(x)` with `b` another projection of the
        same input (a GLU, GATE001's). The finding
        names the gate projection, its activation and the branch it scales. Gates on an
        attention output are GATE002's.

    Why is this bad:
        Fused-MoE kernels, converters and serving stacks that rebuild the block as
        "routed experts + shared expert" drop the gate, so the shared expert's
        contribution is no longer scaled per token; the gate is a `d -> 1` Linear that
        `all-linear` LoRA adapts and quantizers quantize like any other projection.

    Example:
        Qwen3-Next's and Qwen3.5-MoE's sparse MoE blocks return
        `experts(x) + sigmoid(shared_expert_gate(x)) * shared_expert(x)`.

    Use instead:
        A MoE implementation that applies the shared-expert gate (check the converter or
        kernel supports it), and a deliberate choice whether the gate projection is
        adapted or quantized: the finding lists the recipes that reach it.

    References:
        https://github.com/huggingface/transformers/blob/main/src/transformers/models/qwen3_next/modeling_qwen3_next.py
    """

    code = "GATE004"
    name = "gated-branch-output"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    tools = ("vllm", "gguf", "sglang", "peft", "bitsandbytes")

    VALID = (Example("fixtures/zoo/roles.py:SigmoidRouterMoeModel", note="routed experts only, no gated branch"),
             Example("fixtures/zoo/roles.py:VisionGluModel",
                     note="silu(gate(x)) * up(x): a GLU, both projections of the same input"))
    INVALID = (
        Example("fixtures/zoo/roles.py:SharedExpertGateModel",
                paths=("layers.0.mlp.shared_expert_gate", "layers.1.mlp.shared_expert_gate"),
                fix="shared_expert_gate"),
    )

    def check(self, ctx):
        roles = ctx.roles
        found: dict[tuple, list[str]] = defaultdict(list)
        for block in roles.blocks():
            reading = roles.block_roles(block)
            if reading is None:
                continue
            for projection, activation, branch in reading.output_gates:
                if not branch.startswith("the output of"):
                    continue  # attention outputs are GATE002's; a scan's gate is part of its mixer
                path = f"{block}.{projection}" if block else projection
                found[(ctx.graph.info(block).class_name, projection, activation, branch)].append(path)
        for (class_name, projection, activation, branch), paths in found.items():
            paths = sorted(set(paths))
            reached = broken_recipes(paths, ctx.built.model_type)
            target = branch.removeprefix("the output of ").strip("`")
            yield self.finding(
                paths,
                f"{class_name} scales the output of `{target}` by {activation}(`{projection}`(x)); implementations "
                f"that rebuild the block without this gate change its output",
                module_class=_class_of(ctx.graph, paths[0]),
                fix=Fix("Use a MoE/MLP implementation that applies the gate; decide whether the gate projection is "
                        "adapted or quantized",
                        f"gate projection: {projection}; scales: {target}; "
                        f"reached by: {', '.join(reached) or 'no common recipe'}"),
                details={"gate_projection": projection, "activation": activation, "branch": target,
                         "reached_by": reached},
            )


def _class_of(graph, path: str) -> str:
    """The class of the gate's module; for a stacked parameter (``experts.gate_up_proj``),
    the class of the module that owns it."""
    if path in graph.nx.nodes:
        return graph.info(path).class_name
    return graph.info(path.rpartition(".")[0]).class_name
