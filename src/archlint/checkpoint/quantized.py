"""A pre-quantized checkpoint: transformers' quantizer in the loader path, as ``from_pretrained`` puts it.

For a config carrying ``quantization_config``, ``from_pretrained`` makes the quantizer
(``AutoHfQuantizer.from_config(..., pre_quantized=True)``), lets ``preprocess_model``
replace modules on the meta model (``FP8Linear`` with its ``weight_scale_inv``...), asks
``get_model_conversion_mapping(model, None, quantizer)`` for the conversions -- the
quantizer adds its own (``update_weight_conversions``: MXFP4's ``*_blocks``/``*_scales``
pairs gathered into one parameter, FP8 scales following the expert merge) -- and hands
the quantizer to the loader. :func:`quantized_loader` does the same on a structural copy
of the meta model, so the serialized keys are matched by transformers' own code.

Which path it drives, per method:

* ``fp8`` (fine-grained FP8, DeepSeek-V3): the path of a machine that runs FP8 (a GPU of
  compute capability 8.9 or more), where the checkpoint's ``weight`` and
  ``weight_scale_inv`` load as they are into ``FP8Linear``/``FP8Experts`` -- so a missing
  scale is a missing key. Without such a GPU ``from_pretrained`` dequantizes instead, and a
  weight whose scale is missing then loads unscaled without a word; archlint reports the
  path that reports it.
* ``mxfp4`` (gpt-oss): transformers' dequantizing path (``dequantize=True``), the one
  ``from_pretrained`` takes without Triton and the ``kernels`` package -- on this kind of
  machine and on any CPU. The native path's deserializer swizzles the blocks with Triton
  kernels fetched from the Hub, which cannot run on header-only tensors; both paths route
  the same ``*_blocks``/``*_scales`` keys to the same parameters through the same
  converters, so missing and unexpected keys are the same (the dequantizing path also
  checks the dequantized shape, which the native one does not).

Any other method is reported as not checked, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

#: The methods whose loader path archlint drives, and whether it loads dequantized.
DRIVEN = {"fp8": False, "mxfp4": True}


class NotDriven(Exception):
    """The method's loader path cannot be driven here; the message says why."""


@dataclass
class QuantizedLoader:
    """A converted copy of the meta model and the quantizer ``from_pretrained`` would load with."""

    method: str
    shipped: dict[str, Any]  # the config's quantization_config
    quantizer: Any  # transformers HfQuantizer
    model: nn.Module  # the copy preprocess_model converted
    dequantize: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "dequantize": self.dequantize, "notes": list(self.notes)}


def quantized_loader(model: nn.Module, shipped: dict[str, Any]) -> QuantizedLoader | None:
    """The quantizer set up for loading the checkpoint of ``model`` whose config ships
    ``shipped``; None when transformers ignores the method (an unknown ``quant_method`` is
    skipped with a warning, and the checkpoint loads as an unquantized one). Raises
    :class:`NotDriven` for a method archlint does not drive, and for one
    ``from_pretrained`` refuses on this machine."""
    from transformers.quantizers.auto import AutoHfQuantizer, AutoQuantizationConfig

    from ..quantize.oracle import QuantizerUnavailable, captured_logs, first_line, run_quantizer

    with captured_logs():
        if not AutoHfQuantizer.supports_quant_method(shipped):
            return None
    method = str(shipped.get("quant_method") or ("bitsandbytes" if _is_bnb(shipped) else None))
    try:
        qconfig = AutoQuantizationConfig.from_dict(dict(shipped))
    except Exception as e:  # transformers' own verdict on a malformed quantization_config
        raise NotDriven(f"transformers cannot read its quantization_config ({first_line(e)})") from e
    if method not in DRIVEN:
        driven = f"archlint drives transformers' quantizer in the loader for {' and '.join(sorted(DRIVEN))} only"
        refused = _refusal(qconfig)
        if refused:
            raise NotDriven(f"{driven}, and on this machine from_pretrained refuses to load {method}: {refused}")
        raise NotDriven(f"{driven}; {method}'s loader path ({_load_operations(qconfig)}) has not been checked "
                        "against from_pretrained")
    dequantize = DRIVEN[method] or bool(getattr(qconfig, "dequantize", False))
    if dequantize:
        qconfig.dequantize = True
    refused = _refusal(qconfig)
    if refused:
        raise NotDriven(f"from_pretrained refuses to load it on this machine: {refused}")
    try:
        run = run_quantizer(model, qconfig, pre_quantized=True)
    except QuantizerUnavailable as e:
        raise NotDriven(str(e)) from e
    if shipped.get("dequantize"):
        explain = [f"{method}: checked on transformers' dequantizing path (dequantize=True in its quantization_config)"]
    elif dequantize:
        explain = [f"{method}: checked on transformers' dequantizing path (what from_pretrained does without "
                   "Triton and the kernels package); the native path routes the same keys"]
    else:
        explain = [f"{method}: checked as loaded on a machine that runs it natively (a GPU); without one "
                   "from_pretrained dequantizes"]
    return QuantizedLoader(method, dict(shipped), run.quantizer, run.model, dequantize, explain)


def _refusal(qconfig) -> str | None:
    """Why ``validate_environment`` refuses on this machine (a missing package, a device
    check that cannot fall back), None when it accepts."""
    from ..quantize.oracle import REFUSAL_NOTE, environment_verdict, first_line

    try:
        notes = environment_verdict(qconfig, pre_quantized=True)
    except Exception as e:  # the quantizer itself cannot be made (its package is missing)
        return f"{type(e).__name__}: {first_line(e)}"
    return next((n.removeprefix(REFUSAL_NOTE) for n in notes if n.startswith(REFUSAL_NOTE)), None)


def _is_bnb(shipped: dict[str, Any]) -> bool:
    return bool(shipped.get("load_in_4bit") or shipped.get("load_in_8bit"))


def _load_operations(qconfig) -> str:
    """The quantizer's load operations by name, for saying what was not checked."""
    from ..quantize.oracle import captured_logs, first_line, make_quantizer

    try:
        with captured_logs():
            operations = make_quantizer(qconfig, pre_quantized=True).get_load_operations()
    except Exception as e:  # a quantizer whose package is missing raises on import
        return f"its quantizer cannot be made here: {type(e).__name__}: {first_line(e)}"
    names = sorted({op.__name__ for op in operations.values()})
    return ", ".join(names) if names else "weights loaded as stored into its quantized modules"
