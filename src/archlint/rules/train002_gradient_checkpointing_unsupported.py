"""TRAIN002 gradient-checkpointing-unsupported."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class GradientCheckpointingUnsupported(Rule):
    """The model cannot be gradient-checkpointed, or its repeated blocks are not.

    What it does:
        For a transformers model: flags `supports_gradient_checkpointing = False`
        (error), and repeated blocks that are neither `GradientCheckpointingLayer`s nor
        inside a module carrying a `gradient_checkpointing` flag (warning: enabling
        succeeds but these blocks keep their activations).

    Why is this bad:
        `model.gradient_checkpointing_enable()` -- which TRL and the Trainer call for
        `gradient_checkpointing=True` -- raises `ValueError: <Model> does not support
        gradient checkpointing`, or silently saves no memory in the unflagged blocks.

    Example:
        Remote-code ChatGLM and Phi-1.5 classes without `supports_gradient_checkpointing`.

    Use instead:
        Train without gradient checkpointing (smaller batch or sequence length), or
        use a transformers-native class for the model.

    References:
        https://github.com/huggingface/transformers/issues/45923
    """

    code = "TRAIN002"
    name = "gradient-checkpointing-unsupported"
    severity = Severity.ERROR
    severity_note = "warning when repeated blocks are skipped by checkpointing; error when enabling it raises"
    tools = ("transformers", "trl")

    VALID = (Example("fixtures/zoo/hf_tiny.py:tiny_llama"),)
    INVALID = (
        Example("fixtures/zoo/hf_tiny.py:NoCheckpointing", paths=("",), fix="gradient_checkpointing=False"),
        Example("fixtures/zoo/hf_tiny.py:UnflaggedBlocks", paths=("blocks.0", "blocks.1"),
                fix="GradientCheckpointingLayer"),
    )

    def check(self, ctx):
        from transformers import PreTrainedModel
        from transformers.modeling_layers import GradientCheckpointingLayer

        root = ctx.graph.root
        if not isinstance(root, PreTrainedModel):
            return  # gradient_checkpointing_enable() is a transformers API
        if not root.supports_gradient_checkpointing:
            yield self.finding(
                [""],
                f"{type(root).__name__}.supports_gradient_checkpointing is False; "
                f"gradient_checkpointing_enable() raises",
                module_class=type(root).__name__,
                fix=Fix("Train without gradient checkpointing", "TrainingArguments(gradient_checkpointing=False, ...)"),
            )
            return
        for group in ctx.repeated_blocks:
            block = group.representative
            if isinstance(block.module, GradientCheckpointingLayer) or _flagged_ancestor(ctx, block.path):
                continue
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} is repeated {len(group.paths)}x "
                "but is not a GradientCheckpointingLayer "
                f"and no enclosing module checkpoints it; gradient checkpointing skips these blocks",
                module_class=group.representative.class_name,
                severity=Severity.WARNING,
                fix=Fix("Expect no memory saving in these blocks",
                        "derive the block from transformers.modeling_layers.GradientCheckpointingLayer"),
            )


def _flagged_ancestor(ctx, path: str) -> bool:
    parent = ctx.graph.parent(path)
    while parent is not None:
        if hasattr(parent.module, "gradient_checkpointing"):
            return True
        parent = ctx.graph.parent(parent.path)
    return False
