"""CKPT002 checkpoint-shape-mismatch."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class CheckpointShapeMismatch(Rule):
    """A stored tensor whose shape differs from the parameter transformers loads it into.

    What it does:
        From the safetensors headers and transformers' own loader run on meta tensors
        (after its renames and conversions), reports the loader's `mismatched_keys`:
        the key, the checkpoint's shape and the model's shape, exactly as
        `from_pretrained(..., ignore_mismatched_sizes=True, output_loading_info=True)`
        returns them. The config values equal to either size are named.

    Why is this bad:
        transformers 5 `from_pretrained` raises on a shape mismatch; with
        `ignore_mismatched_sizes=True` it loads and re-initialises the parameter
        randomly. Either way the checkpoint was saved from a different configuration.

    Example:
        `model.layers.1.self_attn.o_proj.weight` stored as `[32, 16]` for a model
        that builds it as `[32, 32]`.

    Use instead:
        Use the config the checkpoint was saved with (the config values the fix names),
        or re-export the checkpoint.

    References:
        https://huggingface.co/docs/transformers/main/en/main_classes/model#transformers.PreTrainedModel.from_pretrained
    """

    code = "CKPT002"
    name = "checkpoint-shape-mismatch"
    severity = Severity.ERROR
    tools = ("transformers",)

    VALID = (Example("fixtures/checkpoints/tiny-llama"),)
    INVALID = (
        Example("fixtures/checkpoints/tiny-llama-broken", paths=("model.layers.1.self_attn.o_proj",),
                fix="hidden_size=32"),
    )

    def check(self, ctx):
        found = ctx.checkpoint
        if found is None or found.unavailable or not found.mismatched:
            return
        for key, stored, built in found.mismatched:
            owner = key.rpartition(".")[0]
            path = owner if owner in ctx.graph.nx.nodes else ""
            explained = _config_values(ctx, stored, built)
            yield self.finding(
                [path],
                f"`{key}` is stored as {stored} but the model builds {built} ({found.source})",
                module_class=ctx.graph.info(path).class_name,
                fix=Fix("Load with the config the checkpoint was saved with",
                        "config values equal to a differing size: " + (", ".join(explained) or "none")),
                details={"key": key, "checkpoint": stored, "model": built, "config_values": explained},
            )


def _config_values(ctx, stored: list[int], built: list[int]) -> list[str]:
    """``key=value`` of integer config values that equal a dimension where the shapes differ."""
    differing = [(s, b) for s, b in zip(stored, built, strict=False) if s != b]
    sizes = {s for s, _ in differing} | {b for _, b in differing}
    out = []
    for prefix, cfg in _configs(ctx.config):
        for key, value in sorted(vars(cfg).items()):
            if isinstance(value, int) and not isinstance(value, bool) and value in sizes and value > 1:
                out.append(f"{prefix}{key}={value}")
    return out[:8]


def _configs(config, prefix: str = ""):
    if config is None:
        return
    yield prefix, config
    for key in getattr(type(config), "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "to_dict"):
            yield from _configs(sub, f"{prefix}{key}.")
