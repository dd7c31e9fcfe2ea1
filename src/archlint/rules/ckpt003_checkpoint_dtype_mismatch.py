"""CKPT003 checkpoint-dtype-mismatch."""

from __future__ import annotations

from ..findings import Fix, Severity
from ..sizes import gb
from .base import Example, Rule

#: A stored dtype is reported when it holds at least this share of the floating-point bytes.
SHARE = 0.5


class CheckpointDtypeMismatch(Rule):
    """The checkpoint stores its weights in another dtype than the config declares.

    What it does:
        Adds up the bytes of the floating-point tensors per stored dtype from the
        safetensors headers and compares the dominant one with the config's `dtype`
        (`torch_dtype`).

    Why is this bad:
        An fp32 checkpoint for a bf16 config doubles the download and the peak memory
        of loading; `from_pretrained(dtype="auto")` follows the config, so the weights
        are cast on every load. A bf16 checkpoint under an fp32 config silently trains
        in fp32 from rounded weights.

    Example:
        A `float32` config whose safetensors store `BF16`.

    Use instead:
        Set the config's `dtype` to the stored dtype, or re-save the checkpoint in the
        config's dtype; pass `dtype=` explicitly when loading.

    References:
        https://huggingface.co/docs/transformers/main/en/main_classes/model#model-instantiation-dtype
    """

    code = "CKPT003"
    name = "checkpoint-dtype-mismatch"
    severity = Severity.WARNING
    tools = ("transformers",)

    VALID = (Example("fixtures/checkpoints/tiny-llama"),)
    INVALID = (Example("fixtures/checkpoints/tiny-llama-bf16", paths=("",), fix="bfloat16"),)

    def check(self, ctx):
        from ..checkpoint.agreement import SAFETENSORS_DTYPES
        from ..quantize.oracle import LOW_PRECISION

        found = ctx.checkpoint
        if found is None or found.unavailable or not found.stored_dtypes or not found.config_dtype:
            return
        stored_dtypes = found.stored_dtypes
        if found.quantization:  # a pre-quantized checkpoint: its fp8 weights are the method's storage, not a dtype
            stored_dtypes = {k: v for k, v in stored_dtypes.items() if SAFETENSORS_DTYPES[k] not in LOW_PRECISION}
            if not stored_dtypes:
                return
        total = sum(stored_dtypes.values())
        stored, size = max(stored_dtypes.items(), key=lambda kv: kv[1])
        torch_name = str(SAFETENSORS_DTYPES[stored]).removeprefix("torch.")
        if torch_name == found.config_dtype or size < SHARE * total:
            return
        yield self.finding(
            [""],
            f"the checkpoint stores {gb(size)} as {torch_name} but the config declares dtype={found.config_dtype}",
            module_class=ctx.graph.info("").class_name,
            fix=Fix("Load in the stored dtype",
                    f'from_pretrained(..., dtype=torch.{torch_name})  # or config.dtype = "{torch_name}"'),
            details={"stored_dtypes": found.stored_dtypes, "config_dtype": found.config_dtype},
        )
