"""QUANT002 skip-list-drops-defaults."""

from __future__ import annotations

import json

from ..findings import Fix, Severity
from .base import Example, Rule


class SkipListDropsDefaults(Rule):
    """A user skip list that replaces the modules transformers keeps unquantized by default.

    What it does:
        When the quantization config names its own skip list (`llm_int8_skip_modules`,
        `modules_to_not_convert`), compares the modules transformers' quantizer then
        converts with the defaults `get_modules_to_not_convert` computes without a user
        list (the output embedding `lm_head`, tied weights, the last parameter's module,
        `_keep_in_fp32_modules`), and flags every module the defaults would keep that the
        user's list lets the method quantize.

    Why is this bad:
        The user's list *replaces* the defaults instead of adding to them: a list written
        to protect the vision and audio towers quantizes `lm_head` as well. On Gemma-4 E2B
        4-bit inference then fails in `fix_4bit_weight_quant_state_from_module`; elsewhere
        the output head silently loses quality.

    Example:
        `BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=["vision_tower",
        "audio_tower"])` on google/gemma-4-E2B-it quantizes `lm_head` and
        `model.embed_audio.embedding_projection`.

    Use instead:
        The defaults plus your entries, as printed in the fix.

    References:
        https://github.com/huggingface/transformers/issues/45674, https://github.com/huggingface/transformers/pull/45734
    """

    code = "QUANT002"
    name = "skip-list-drops-defaults"
    severity = Severity.WARNING
    reads_ahead = frozenset({"quantization"})
    tools = ("bitsandbytes", "transformers")

    VALID = (Example("fixtures/configs/google__gemma-4-E2B-it",
                     quantization="fixtures/quantization/bnb-4bit-skip-defaults.json"),)
    INVALID = (
        Example("fixtures/configs/google__gemma-4-E2B-it",
                quantization="fixtures/quantization/bnb-4bit-skip-vision.json",
                paths=("lm_head", "model.embed_audio.embedding_projection"), fix='"lm_head"'),
    )

    def check(self, ctx):
        preview = ctx.quantization
        if preview is None or preview.unavailable or not preview.dropped_defaults:
            return
        idle_paths = {e: _container_paths(ctx, e) for e in preview.idle_skip_entries}
        user = [p for e in preview.user_skip_list or () for p in (idle_paths.get(e) or [e])]
        merged = sorted(set(preview.default_skip_list) | set(user))
        key = preview.skip_list_key or "llm_int8_skip_modules"
        idle = preview.idle_skip_entries
        note = (f"; entries that keep nothing the method converts: {', '.join(idle)} (transformers matches each "
                "module's own path from its start, so a container name does not protect the Linears inside it; "
                "the fix names the containers' full paths)"
                if idle else "")
        classes = {ctx.graph.info(p).class_name for p in preview.dropped_defaults if p in ctx.graph.nx.nodes}
        yield self.finding(
            preview.dropped_defaults,
            f"`{key}` replaces transformers' default skip list: {len(preview.dropped_defaults)} module(s) "
            f"the defaults keep in high precision are quantized ({', '.join(preview.dropped_defaults[:3])}"
            f"{', ...' if len(preview.dropped_defaults) > 3 else ''}){note}",
            module_class=", ".join(sorted(classes)) or "Linear",
            fix=Fix("Keep the defaults and add your entries", f"{key}={json.dumps(merged)}"),
            details={"defaults": preview.default_skip_list, "user": preview.user_skip_list,
                     "quantized_defaults": preview.dropped_defaults, "entries_keeping_nothing": idle},
        )


def _container_paths(ctx, entry: str) -> list[str]:
    """Full paths of the modules an entry names by its last segments (``vision_tower`` ->
    ``model.vision_tower``): as a skip-list entry a full path also protects what is inside."""
    return sorted(p for p in ctx.graph.nx.nodes if p == entry or p.endswith("." + entry))
