"""transformers' own quantizer as the oracle, run on a copy of the meta model.

``from_pretrained(..., quantization_config=...)`` does three things before it reads a
weight: ``AutoHfQuantizer.from_config`` picks the quantizer, ``validate_environment``
checks the machine, and ``preprocess_model`` (inside the model's init context: meta
device, load dtype) computes the skip list with ``get_modules_to_not_convert`` and lets
the integration replace modules (``replace_with_bnb_linear``, ``replace_with_mxfp4_linear``,
``replace_with_fp8_linear``...). archlint runs the same calls on a structural copy of the
meta model, so what it reports as quantized is what transformers replaced.

The machine archlint runs on is not the machine the model trains on, so the environment
checks are not allowed to change the answer: ``validate_environment`` runs on a throwaway
quantizer (its verdict becomes a note), and during ``preprocess_model`` the current
accelerator reads as CUDA and hub kernels are not downloaded (kernels are only called in
``forward``, which archlint never runs on a quantized copy).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch
from torch import nn

#: Storage dtypes that hold quantized values (packed 4-bit, int8, fp8, MXFP4 blocks).
LOW_PRECISION = frozenset({torch.uint8, torch.int8, torch.float8_e4m3fn, torch.float8_e5m2,
                           *(d for d in (getattr(torch, "float8_e8m0fnu", None),) if d is not None)})


class QuantizerUnavailable(Exception):
    """The quantization method needs a package that is not installed (e.g. bitsandbytes)."""


@dataclass
class QuantizerRun:
    """One ``preprocess_model`` on a copy: the converted copy and what the quantizer computed."""

    quantizer: Any  # transformers HfQuantizer
    model: nn.Module  # the converted copy
    skip_list: list[str]  # modules_to_not_convert as the quantizer computed it
    quantized_parameters: list[str]  # full parameter names the method stores quantized
    quantized_modules: list[str]  # modules owning at least one of them
    notes: list[str] = field(default_factory=list)  # what transformers logged while converting


def make_quantizer(qconfig, *, pre_quantized: bool):
    """``AutoHfQuantizer.from_config`` on a private copy of ``qconfig`` (quantizers mutate it)."""
    from transformers.quantizers.auto import AutoHfQuantizer

    return AutoHfQuantizer.from_config(copy.deepcopy(qconfig), pre_quantized=pre_quantized)


#: How :func:`environment_verdict`'s note on a refusal begins (the reason follows).
REFUSAL_NOTE = "on this machine from_pretrained would refuse: "


def environment_verdict(qconfig, *, pre_quantized: bool) -> list[str]:
    """What ``validate_environment`` says about *this* machine, as notes; it runs on a
    throwaway quantizer so a device check (e.g. MXFP4 falling back to ``dequantize``
    without Triton) cannot change the prediction for the training machine."""
    notes: list[str] = []
    quantizer = make_quantizer(qconfig, pre_quantized=pre_quantized)
    before = getattr(quantizer.quantization_config, "dequantize", None)
    with captured_logs() as logged:
        try:
            quantizer.validate_environment(device_map=None, weights_only=True)
        except Exception as e:  # ImportError for a missing package, RuntimeError/ValueError for the device
            notes.append(f"{REFUSAL_NOTE}{first_line(e)}")
    if before is False and getattr(quantizer.quantization_config, "dequantize", None) is True:
        notes.append("on this machine transformers would fall back to dequantize=True (device/kernel checks)")
    notes.extend(f"transformers: {m}" for m in logged)
    return notes


def run_quantizer(model: nn.Module, qconfig, *, pre_quantized: bool, empty_skip_list: bool = False,
                  fresh=None) -> QuantizerRun:
    """Convert a copy of ``model`` the way ``from_pretrained`` does before loading weights.

    With ``empty_skip_list`` the quantizer's skip list is replaced by ``[]``: what the method
    would convert if nothing were protected (the difference to a normal run is what the
    skip list kept)."""
    from transformers.utils.generic import ContextManagers

    _require_packages(qconfig)
    fresh = fresh or _fresh_copy
    quantizer = make_quantizer(qconfig, pre_quantized=pre_quantized)
    if empty_skip_list:
        quantizer.get_modules_to_not_convert = lambda *args, **kwargs: []
    converted = fresh(model)
    dtype = _load_dtype(model)
    cls = type(converted)
    init = cls.get_init_context(dtype, True, False, None) if hasattr(cls, "get_init_context") else []
    with captured_logs() as logged, _training_machine(), _class_edits_undone(), ContextManagers(init):
        device_map = quantizer.update_device_map(None)
        quantizer.preprocess_model(model=converted, dtype=dtype, device_map=device_map,
                                   checkpoint_files=None, use_kernels=False)
    with captured_logs():
        parameters = [name for name, p in converted.named_parameters()
                      if _is_quantized(quantizer, converted, name, p, model)]
    owners = sorted({name.rpartition(".")[0] for name in parameters}, key=_path_key)
    return QuantizerRun(
        quantizer=quantizer,
        model=converted,
        skip_list=sorted(getattr(quantizer, "modules_to_not_convert", None) or []),
        quantized_parameters=parameters,
        quantized_modules=owners,
        notes=[f"transformers: {m}" for m in logged],
    )


def is_trainable(quantizer) -> bool:
    """transformers' verdict on training through the method (Trainer refuses otherwise). A
    pre-quantized checkpoint loaded with ``dequantize=True`` is no longer quantized at all:
    ``postprocess_model`` removes the quantizer from the model."""
    if quantizer.pre_quantized and getattr(quantizer.quantization_config, "dequantize", False):
        return True
    with captured_logs():
        return bool(quantizer.is_trainable or getattr(quantizer, "is_qat_trainable", False))


def _is_quantized(quantizer, converted: nn.Module, name: str, param: torch.Tensor, original: nn.Module) -> bool:
    """A parameter the method stores quantized: the quantizer says it quantizes it on load,
    or (pre-quantized checkpoints, whose weights arrive quantized) its replaced module
    declares it in a quantized storage dtype where the original held floats."""
    if quantizer.param_needs_quantization(converted, name):
        return True
    if not quantizer.pre_quantized or param.dtype not in LOW_PRECISION:
        return False
    try:
        before = original.get_parameter(name)
    except AttributeError:
        return True  # a parameter the replaced module introduced (blocks, packed weights)
    return before.is_floating_point() and before.dtype not in LOW_PRECISION


def _load_dtype(model: nn.Module) -> torch.dtype:
    dtype = getattr(model, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.bfloat16)


def _fresh_copy(model: nn.Module) -> nn.Module:
    from ..lora.oracle import fresh_copy

    return fresh_copy(model)


def _path_key(path: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split(".")]


def _require_packages(qconfig) -> None:
    method = str(getattr(qconfig.quant_method, "value", qconfig.quant_method))
    if method == "bitsandbytes":
        try:
            with captured_logs():
                import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise QuantizerUnavailable(
                "bitsandbytes is not installed, so transformers' bitsandbytes integration could not run "
                "(pip install 'archlint[quant]')") from e


@contextlib.contextmanager
def _training_machine() -> Iterator[None]:
    """During ``preprocess_model``: the current accelerator reads as CUDA (device checks
    that would dequantize on a CPU-only machine), and hub kernels are not downloaded."""
    cuda = torch.device("cuda")
    patches = [mock.patch.object(sys.modules[name], "get_current_accelerator", lambda: cuda)
               for name in list(sys.modules)
               if name.startswith("transformers.quantizers.") and hasattr(sys.modules[name], "get_current_accelerator")]
    try:
        from transformers.integrations import hub_kernels

        patches.append(mock.patch.object(hub_kernels, "get_kernel", lambda *args, **kwargs: _KernelNotLoaded()))
    except ImportError:
        pass
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


#: What transformers' ``use_experts_implementation`` sets on the class it is given.
_EXPERTS_CLASS_ATTRIBUTES = ("__init__", "forward", "_apply_gate")


@contextlib.contextmanager
def _class_edits_undone() -> Iterator[None]:
    """Classes as they were before the conversion. transformers' FP8 integration hands its
    experts class to ``use_experts_implementation`` once per experts module it replaces,
    which wraps that class's ``__init__`` and ``forward`` again each time, for good: every
    later conversion in the process builds each experts module through all the wrappers the
    earlier ones added (DeepSeek-V3: 58 more per conversion). Each wrapper sets the same
    instance attributes from its own arguments after the inner ones ran, so the outermost,
    added for the module being built, decides them either way: undoing the earlier
    conversions' wrappers changes nothing the conversion produces, only its cost."""
    saved: dict[type, dict[str, Any]] = {}
    missing = object()

    def recording(real):
        def use_experts_implementation(experts_class=None, *args, **kwargs):
            if isinstance(experts_class, type) and experts_class not in saved:
                saved[experts_class] = {k: vars(experts_class).get(k, missing) for k in _EXPERTS_CLASS_ATTRIBUTES}
            return real(experts_class, *args, **kwargs)
        return use_experts_implementation

    try:
        from transformers.integrations import moe
    except ImportError:
        yield
        return
    real = moe.use_experts_implementation
    patches = [mock.patch.object(module, "use_experts_implementation", recording(real))
               for name, module in list(sys.modules.items())
               if name.startswith("transformers.") and getattr(module, "use_experts_implementation", None) is real]
    try:
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            yield
    finally:
        for cls, attributes in saved.items():
            for key, value in attributes.items():
                if value is missing:
                    if key in vars(cls):
                        delattr(cls, key)
                else:
                    setattr(cls, key, value)


class _KernelNotLoaded:
    """Stands for a hub kernel during a structural conversion; any use is a bug."""

    def __getattr__(self, name):
        raise RuntimeError("archlint converts models structurally and never runs quantized kernels")


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Messages transformers and bitsandbytes log at WARNING or above, collected instead of
    printed (they become notes of the quantization result).

    The same lint must give the same notes whatever ran before it and however quiet the
    libraries are kept, so inside the block the loggers let WARNING through (to this
    collector only) and transformers' ``warning_once`` logs every time: a message it already
    gave once in this process (an earlier target, an earlier run of the quantizer) would
    otherwise be missing from this report."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = first_line(record.getMessage())
            if text and text not in messages:
                messages.append(text)

    handler = _Collect(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("transformers", "bitsandbytes")]
    saved = [(lg, lg.propagate, list(lg.handlers), lg.level) for lg in loggers]
    for lg in loggers:
        lg.handlers = [handler]
        lg.propagate = False
        lg.setLevel(logging.WARNING)
    once = vars(logging.Logger).get("warning_once")  # transformers adds it to every Logger
    if once is not None:
        logging.Logger.warning_once = logging.Logger.warning  # type: ignore[attr-defined]
    try:
        yield messages
    finally:
        if once is not None:
            logging.Logger.warning_once = once  # type: ignore[attr-defined]
        for lg, propagate, handlers, level in saved:
            lg.handlers = handlers
            lg.propagate = propagate
            lg.setLevel(level)


def first_line(value) -> str:
    text = str(value).strip().splitlines()
    return text[0].strip() if text else type(value).__name__
