"""QUANT001 unquantized-weights."""

from __future__ import annotations

from ..findings import Fix, Severity
from ..sizes import gb
from .base import Example, Rule

#: Weights a method leaves in high precision are reported from this share of the quantized model's bytes.
SHARE = 0.05


class UnquantizedWeights(Rule):
    """Large weights the quantization method leaves in high precision.

    What it does:
        Runs transformers' own quantizer for the method (`--quantization`, or the
        config's `quantization_config`) on a copy of the meta model and adds up the bytes
        of every weight it did not convert: stacked 3-D experts, bare weight parameters,
        anything that is not an `nn.Linear`. Embeddings and the modules the skip list
        keeps on purpose are not counted. Weights holding at least 5% of the quantized
        model's bytes are reported, with the footprint before and after.

    Why is this bad:
        bitsandbytes swaps only `nn.Linear` modules. MoE experts stored as 3-D
        parameters stay in bf16, so a "4-bit" Qwen3-30B-A3B still needs ~59 GB
        (Gemma-4 26B-A4B: ~46 GB). QLoRA memory plans built on "4 bits per
        parameter" fail with out-of-memory on load.

    Example:
        `model.layers.*.mlp.experts.gate_up_proj` `[128, 1536, 2048]` on
        Qwen/Qwen3-30B-A3B with `--quantization bnb-4bit`: 97% of the bytes stay bf16.

    Use instead:
        Budget memory from the footprint table, or use a method that quantizes the
        experts (an FP8 or MXFP4 checkpoint, or a per-expert module layout).

    References:
        https://github.com/bitsandbytes-foundation/bitsandbytes/issues/1849,
        https://github.com/axolotl-ai-cloud/axolotl/pull/3395 (MOE-02)
    """

    code = "QUANT001"
    name = "unquantized-weights"
    severity = Severity.WARNING
    reads_ahead = frozenset({"quantization"})
    tools = ("bitsandbytes", "transformers")

    VALID = (Example("fixtures/configs/meta-llama__Llama-3.1-8B", quantization="bnb-4bit"),)
    INVALID = (
        Example("fixtures/configs/Qwen__Qwen3-30B-A3B", quantization="bnb-4bit",
                paths=tuple(f"model.layers.{i}.mlp.experts" for i in range(48)), fix="GB"),
    )

    def check(self, ctx):
        preview = ctx.quantization
        if preview is None or preview.unavailable or not preview.unquantized or preview.dequantize:
            return  # dequantize=True loads every weight in high precision on purpose
        after = preview.bytes["after"]
        by_owner: dict[str, list[dict]] = {}  # owner pattern -> its unquantized weight groups
        for group in preview.unquantized:
            by_owner.setdefault(group["pattern"].rpartition(".")[0], []).append(group)
        for pattern, groups in by_owner.items():
            size = sum(g["bytes"] for g in groups)
            share = size / after if after else 0.0
            if share < SHARE:
                continue
            owners = sorted({p.rpartition(".")[0] for g in groups for p in g["paths"]})
            leaves = ", ".join(f"{g['ndim']}-D `{g['pattern'].rpartition('.')[2]}`" for g in groups)
            cls = groups[0]["class"]
            yield self.finding(
                owners,
                f"{preview.method} leaves {leaves} of {cls} in high precision: "
                f"{gb(size)}, {share:.0%} of the {gb(after)} the quantized model needs",
                module_class=cls,
                pattern=pattern,
                fix=Fix("Budget for the unquantized weights",
                        f"{preview.source}: {gb(preview.bytes['before'])} -> {gb(after)}, of which {gb(size)} stay "
                        f"{_dtype(preview)} in {pattern}; the footprint table lists every tower"),
                details={"bytes": int(size), "share": round(share, 4),
                         "parameters": [p for g in groups for p in g["paths"]]},
            )


def _dtype(preview) -> str:
    labels = [k for k in preview.bytes.get("by_dtype", {}) if k != preview.label]
    return labels[0] if labels else "high precision"
