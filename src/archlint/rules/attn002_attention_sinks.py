"""ATTN002 attention-sinks."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class AttentionSinks(Rule):
    """Learned attention-sink logits, or a model that declares no SDPA support.

    What it does:
        Flags attention modules that own a `sinks` parameter (one learned logit per
        head, appended to the scores before softmax, as in gpt-oss), and models (or
        towers of a composite model) whose class sets `_supports_sdpa = False`, for which
        transformers chose eager attention when the model was built (read from the
        built model's `config._attn_implementation`, transformers' own decision).

    Why is this bad:
        SDPA and FlashAttention-2 have no sink term: transformers falls back to eager
        attention, whose memory grows with the square of the sequence length, and
        long-context training runs out of memory. Requesting `attn_implementation="sdpa"`
        for a model that declares no SDPA support raises.

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
        Example("fixtures/zoo/hf_tiny.py:SdpaModelWithEagerTower", paths=("vision_tower",), fix="eager",
                note="the tower, not the whole model, runs eager attention"),
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
        if found:
            return
        attention = [p for g in ctx.attention_modules for p in g.paths]
        for path, model in _eager_models(ctx.graph.root, attention):
            flash = getattr(type(model), "_supports_flash_attn", False)
            where = "the whole model" if not path else f"the tower `{path}`"
            yield self.finding(
                [path],
                f"{type(model).__name__} ({where}) declares _supports_sdpa = False; transformers chose eager "
                "attention for it (config._attn_implementation), whose memory grows with the square of the "
                "sequence length",
                module_class=type(model).__name__,
                fix=Fix(
                    "Plan memory for eager attention" + (", or use FlashAttention-2" if flash else ""),
                    'from_pretrained(..., attn_implementation="flash_attention_2")' if flash
                    else 'from_pretrained(..., attn_implementation="eager")  # the only supported backend',
                ),
                details={"attn_implementation": "eager"},
            )


def _eager_models(root, attention: list[str]):
    """(path, model) of the outermost transformers models that declare no SDPA support, run
    eager attention as transformers set it up, and hold attention modules."""
    from transformers import PreTrainedModel

    reported: list[str] = []
    for path, module in root.named_modules():
        if not isinstance(module, PreTrainedModel) or getattr(type(module), "_supports_sdpa", False):
            continue
        if getattr(getattr(module, "config", None), "_attn_implementation", None) != "eager":
            continue
        if any(path == r or path.startswith(f"{r}.") or not r for r in reported):
            continue  # inside a model already reported
        if any(not path or a == path or a.startswith(f"{path}.") for a in attention):
            reported.append(path)
            yield path, module
