"""The quantization preview of one lint: what the method quantizes, keeps, and costs.

:func:`preview` is the entry point. It asks transformers (:mod:`.oracle`) three things on
copies of the meta model -- the conversion with the skip list the quantizer computes, the
conversion with an empty skip list (the difference is what the skip list *kept*), and the
defaults ``get_modules_to_not_convert`` computes when the user gives no list -- and turns
the answers into data (:class:`QuantizationPreview`) that rules and renderers read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .footprint import by_tower, storage_label, tensor_bytes, totals
from .oracle import QuantizerUnavailable, captured_logs, environment_verdict, first_line, is_trainable, run_quantizer
from .request import QuantizationRequest, config_quantization

#: Unquantized weights below this share of the quantized model's bytes are not listed.
_LISTED_SHARE = 0.01


@dataclass
class QuantizationPreview:
    """What one quantization method does to one model (all data, no live objects)."""

    method: str  # transformers' quant_method ("bitsandbytes", "mxfp4", "fp8", ...)
    source: str  # "--quantization bnb-4bit" | "config.json quantization_config"
    label: str  # how a quantized weight is stored: "nf4", "int8", "mxfp4", ...
    pre_quantized: bool = False
    quantized: list[str] = field(default_factory=list)  # module paths holding quantized weights
    quantized_parameters: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # modules the method converts but the skip list kept
    skip_list: list[str] = field(default_factory=list)  # modules_to_not_convert as the quantizer computed it
    skip_list_key: str | None = None  # the config key the skip list is read from
    user_skip_list: list[str] | None = None  # the user's own list, when given
    default_skip_list: list[str] = field(default_factory=list)  # get_modules_to_not_convert without a user list
    dropped_defaults: list[str] = field(default_factory=list)  # kept by the defaults, quantized under the user's list
    idle_skip_entries: list[str] = field(default_factory=list)  # user entries that keep no convertible module
    bytes: dict[str, Any] = field(default_factory=dict)
    towers: list[dict[str, Any]] = field(default_factory=list)
    unquantized: list[dict[str, Any]] = field(default_factory=list)  # large weights left in high precision
    trainable: bool = True  # the quantizer's is_trainable
    dequantize: bool | None = None  # the config's `dequantize`, for methods that have it
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None  # why transformers' quantizer could not run here
    peft: dict[str, Any] | None = None  # PEFT's verdict on the user's plan over the quantized copy

    def to_dict(self) -> dict[str, Any]:
        out = {
            "method": self.method,
            "source": self.source,
            "pre_quantized": self.pre_quantized,
            "quantized": self.quantized,
            "quantized_parameters": self.quantized_parameters,
            "kept": self.kept,
            "skip_list": self.skip_list,
            "bytes": self.bytes,
            "towers": self.towers,
            "trainable": self.trainable,
            "notes": self.notes,
        }
        if self.unavailable:
            out["unavailable"] = self.unavailable
        if self.peft is not None:
            out["peft"] = self.peft
        return out


def wanted(request: QuantizationRequest | None, config) -> bool:
    """Whether a lint previews quantization: asked for, or the config ships quantized."""
    return request is not None or config_quantization(config) is not None


def preview(model: nn.Module, config, request: QuantizationRequest | None, *, tower_of=None,
            plan=None) -> QuantizationPreview:
    """Preview ``request`` (or the config's own ``quantization_config``) on ``model``.

    As ``from_pretrained`` does, a config that ships a ``quantization_config`` is
    pre-quantized and the user's config is merged into it
    (``AutoHfQuantizer.merge_quantization_configs``). With a LoRA ``plan`` and a trainable
    method, PEFT is run on the quantized copy (after ``postprocess_model``, as a loaded model
    is): its verdict on the quantized module types is ``peft``."""
    from transformers.quantizers.auto import AutoHfQuantizer

    shipped = config_quantization(config)
    pre_quantized = shipped is not None and AutoHfQuantizer.supports_quant_method(shipped)
    user = request.config() if request is not None else None
    if pre_quantized:
        qconfig = AutoHfQuantizer.merge_quantization_configs(dict(shipped), user)
        source = "config.json quantization_config" + (f" merged with --quantization {request.label}" if request else "")
    else:
        qconfig = user
        source = f"--quantization {request.label}" if request else "config.json quantization_config"
    if qconfig is None:
        method = str(shipped.get("quant_method", "unknown")) if shipped else "unknown"
        return QuantizationPreview(method, source, method, unavailable=f"transformers has no quantizer for {method!r}")
    method = str(getattr(qconfig.quant_method, "value", qconfig.quant_method))
    result = QuantizationPreview(method, source, storage_label(qconfig), pre_quantized=pre_quantized,
                                 dequantize=getattr(qconfig, "dequantize", None))
    try:
        run = run_quantizer(model, qconfig, pre_quantized=pre_quantized)
        unrestricted = run_quantizer(model, qconfig, pre_quantized=pre_quantized, empty_skip_list=True)
    except QuantizerUnavailable as e:
        result.unavailable = str(e)
        return result
    except Exception as e:  # a quantizer that cannot convert this model: say so, keep the lint going
        result.unavailable = f"transformers' {method} quantizer failed on this model: {first_line(e)}"
        return result
    result.notes = _unique(environment_verdict(qconfig, pre_quantized=pre_quantized) + run.notes)
    result.trainable = is_trainable(run.quantizer)
    result.quantized = run.quantized_modules
    result.quantized_parameters = run.quantized_parameters
    result.kept = [p for p in unrestricted.quantized_modules if p not in set(run.quantized_modules)]
    result.skip_list = run.skip_list
    _skip_lists(result, model, request, unrestricted.quantized_modules)
    rows = tensor_bytes(model, run.model, run.quantizer, set(run.quantized_parameters), result.label)
    result.bytes = totals(rows)
    tower_of = tower_of or (lambda name: "")
    result.towers = by_tower(rows, tower_of)
    result.unquantized = _unquantized(rows, run.model, run.skip_list, result.bytes["after"])
    if plan is not None and result.trainable and result.quantized:
        result.peft = _peft_on_quantized(run, plan)
    return result


def _peft_on_quantized(run, plan) -> dict[str, Any]:
    """``get_peft_model`` on the converted copy itself (it is ours to change)."""
    from ..lora.oracle import peft_available, run_peft

    if not peft_available():
        return {"ok": None, "error": "PEFT is not installed"}
    with captured_logs():
        run.quantizer.postprocess_model(run.model)
    outcome = run_peft(run.model, plan, fresh=lambda m: m)
    return {"ok": outcome.ok, "error": outcome.error, "modules": list(outcome.modules)}


def _skip_lists(result: QuantizationPreview, model: nn.Module, request: QuantizationRequest | None,
                convertible: list[str]) -> None:
    """The defaults ``get_modules_to_not_convert`` computes without a user list, the
    quantized modules those defaults would have kept, and the user's entries that keep
    none of the modules the method converts (a container name: transformers matches each
    module's own path, so the container's Linears are still converted)."""
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module

    keep_fp32 = getattr(model, "_keep_in_fp32_modules", None)
    result.default_skip_list = sorted(HfQuantizer.get_modules_to_not_convert(model, None, keep_fp32))
    given = request.skip_list if request is not None else None
    if given is None:
        return
    result.skip_list_key, result.user_skip_list = given[0], given[1]
    result.dropped_defaults = [p for p in result.quantized if not should_convert_module(p, result.default_skip_list)]
    result.idle_skip_entries = [e for e in result.user_skip_list
                                if all(should_convert_module(p, [e]) for p in convertible)]


def _unquantized(rows, converted: nn.Module, skip_list: list[str], after_total: int) -> list[dict[str, Any]]:
    """Weights (>= 2-D, not embeddings, not kept on purpose by the skip list) the method
    leaves in high precision, grouped by pattern, largest first."""
    from transformers.quantizers.quantizers_utils import should_convert_module

    from ..findings import star_indices

    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"paths": [], "bytes": 0.0})
    for r in rows:
        if r.quantized or r.stored_as == "replaced" or len(r.shape) < 2:
            continue
        owner = r.name.rpartition(".")[0]
        module = converted.get_submodule(owner) if owner else converted
        if isinstance(module, nn.Embedding) or not should_convert_module(owner, skip_list):
            continue
        key = star_indices(r.name)
        g = groups[key]
        g["paths"].append(r.name)
        g["bytes"] += r.after
        g["class"] = type(module).__name__
        g["ndim"] = len(r.shape)
    out = []
    for pattern, g in groups.items():
        share = g["bytes"] / after_total if after_total else 0.0
        if share >= _LISTED_SHARE:
            out.append({"pattern": pattern, "paths": g["paths"], "bytes": int(g["bytes"]), "share": round(share, 4),
                        "class": g["class"], "ndim": g["ndim"]})
    return sorted(out, key=lambda g: -g["bytes"])


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
