"""QUANT003 untrainable-quantization."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class UntrainableQuantization(Rule):
    """A LoRA plan on a model whose quantization cannot be trained through.

    What it does:
        With a LoRA plan (`--target-modules`, `--target-parameters`, `--peft-config`) and
        a quantization (`--quantization`, or the config's own `quantization_config`),
        asks transformers' quantizer whether the method is trainable (`is_trainable`)
        and which weights it stores quantized, and flags the plan's modules and
        parameters that land on quantized weights of a method that cannot train
        (MXFP4 without `dequantize`). Under such a method even a plan that avoids the
        quantized weights is flagged: transformers' Trainer refuses the model.

    Why is this bad:
        gpt-oss ships MXFP4 experts (`quantization_config.quant_method = "mxfp4"`).
        Loaded as shipped, they are packed `uint8` blocks: LoRA on them cannot
        backpropagate, and `Trainer` raises because the quantizer is not trainable.

    Example:
        `--target-parameters mlp.experts.gate_up_proj,mlp.experts.down_proj` on
        openai/gpt-oss-20b.

    Use instead:
        Load with `quantization_config=Mxfp4Config(dequantize=True)` (bf16 experts), or
        a method PEFT can train through (bitsandbytes).

    References:
        https://huggingface.co/docs/transformers/main/en/quantization/mxfp4
    """

    code = "QUANT003"
    name = "untrainable-quantization"
    severity = Severity.ERROR
    reads_ahead = frozenset({"plans", "quantization"})
    tools = ("peft", "transformers")

    _PLAN = {"target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]}
    VALID = (
        Example("fixtures/configs/meta-llama__Llama-3.1-8B", quantization="bnb-4bit",
                plan={"target_modules": ["q_proj", "v_proj"]}),
    )
    INVALID = (
        Example("fixtures/configs/openai__gpt-oss-20b", plan=_PLAN,
                paths=tuple(f"model.layers.{i}.mlp.experts" for i in range(24)), fix="dequantize=True"),
    )

    def check(self, ctx):
        preview = ctx.quantization
        if preview is None or preview.unavailable or ctx.plan is None:
            return
        if preview.trainable:
            yield from self._unwrappable(ctx, preview)
            return
        evaluation = ctx.plans.user
        params = set(evaluation.outcome.parameters) if evaluation else set()
        modules = set(evaluation.outcome.modules) if evaluation else set()
        for entry in evaluation.entries if evaluation else ():
            params.update(entry.parameters)
            modules.update(entry.modules)
        quantized_params = set(preview.quantized_parameters)
        hit = sorted({p.rpartition(".")[0] for p in params & quantized_params} | (modules & set(preview.quantized)))
        paths = hit or [""]
        root = ctx.graph.info("").class_name
        cls = ctx.graph.info(paths[0]).class_name if paths[0] in ctx.graph.nx.nodes else root
        where = (f"the plan adapts {len(hit)} module(s) whose weights {preview.method} stores quantized"
                 if hit else f"the plan avoids the quantized weights, but Trainer refuses a {preview.method} model")
        yield self.finding(
            paths,
            f"{preview.method} (from {preview.source}) cannot be trained through: {where}",
            module_class=cls,
            fix=Fix("Dequantize on load",
                    "quantization_config.dequantize = True  # e.g. from_pretrained(..., "
                    f"quantization_config={_config_class(preview.method)}(dequantize=True))"),
            details={"method": preview.method, "config_key": "quantization_config.dequantize",
                     "quantized_parameters": [p for p in preview.quantized_parameters if p in params]},
        )


    def _unwrappable(self, ctx, preview):
        """PEFT raised on the quantized copy although the plan works on the unquantized model."""
        verdict = preview.peft
        evaluation = ctx.plans.user
        if not verdict or verdict.get("ok") is not False or evaluation is None or not evaluation.ok:
            return
        error = verdict.get("error") or {}
        root = ctx.graph.info("").class_name
        yield self.finding(
            [""],
            f"PEFT cannot apply the plan to the {preview.method}-quantized model: "
            f"{error.get('type')}: {error.get('message', '').splitlines()[0] if error.get('message') else ''}",
            module_class=root,
            fix=Fix("Target the modules PEFT can wrap under this method",
                    "the plan works on the unquantized model; exclude the quantized types PEFT rejects, "
                    "or quantize with a method PEFT supports (bitsandbytes)"),
            details={"method": preview.method, "peft_error": error},
        )


def _config_class(method: str) -> str:
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING

    cls = AUTO_QUANTIZATION_CONFIG_MAPPING.get(method)
    return cls.__name__ if cls is not None else "QuantizationConfig"
