"""Probe one module: synthesise its input, record its forward on meta, cache the result.

Inputs are ``[1, 4, d]`` meta tensors in the module's own dtype, ``d`` read from the
module itself (a ``hidden_size``-like attribute, its first Linear's ``in_features``, the
last dimension of its own weight) and checked by running the forward: the first ``d``
that runs is kept. Stacked experts following transformers' experts protocol
(``_apply_gate``, ``gate_up_proj``) are run through transformers' ``batched_mm``
implementation with synthesised routing, which has no data-dependent ops.

Results are cached per lint (:mod:`archlint.facts.probes`) under a key made of the class, every parameter and buffer
(name, shape, dtype) and the module's scalar attributes, so 30 identical layers cost one
probe while two instances configured differently (clipping on/off, another activation)
are probed apart. A failing probe returns its error; it never raises.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import one_line
from .trace import Operand, Recorder, Trace

TOKENS = 4
_HIDDEN_ATTRS = ("hidden_size", "hidden_dim", "embed_dim", "d_model", "dim", "in_features", "normalized_shape")


@dataclass(frozen=True)
class Probe:
    """The outcome of probing one module: a trace, or why there is none."""

    trace: Trace | None
    error: str = ""
    dim: int | None = None

    @property
    def ok(self) -> bool:
        return self.trace is not None


def run_probe(module: nn.Module, input_dtype: torch.dtype | None = None, *, with_tensors: bool = False) -> Probe:
    """Probe ``module`` once; a failing probe returns its error.

    ``input_dtype`` defaults to the module's own dtype; norms are probed with bf16 input
    whatever their weights are, because cast order only shows on a low-precision input.
    Callers cache the result under :func:`cache_key` (one lint's cache lives in its facts).
    """
    try:
        return _run(module, input_dtype, with_tensors=with_tensors)
    except Exception as e:  # a probe never stops the lint
        return Probe(None, error=one_line(e))


def cache_key(module: nn.Module) -> str:
    cls = type(module)
    tensors = sorted(
        (n, tuple(t.shape), str(t.dtype))
        for n, t in [*module.named_parameters(), *module.named_buffers()]
    )
    scalars = sorted(
        ((k, v) for m in module.modules() for k, v in vars(m).items()
         if isinstance(v, (bool, int, float, str)) and not k.startswith("_")),
        key=repr,  # one attribute name may hold an int here and a str there
    )
    classes = [type(m).__qualname__ for m in module.modules()]
    text = repr((cls.__module__, cls.__qualname__, tensors, scalars, classes))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def module_dtype(module: nn.Module) -> torch.dtype:
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.bfloat16


def candidate_dims(module: nn.Module) -> list[int]:
    """Input widths worth trying, most likely first."""
    dims: list[int] = []
    for attr in _HIDDEN_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
        if isinstance(value, int) and value > 0:
            dims.append(value)
    for child in module.modules():
        if isinstance(child, nn.Linear):
            dims.append(child.in_features)
            break
    for child in module.modules():  # a bare-weight projection (a router's [experts, d] weight)
        weight = child._parameters.get("weight")
        if child is not module and not isinstance(child, nn.Linear) and weight is not None and weight.ndim == 2:
            dims.append(weight.shape[-1])
            break
    for p in module.parameters(recurse=False):
        if p.ndim >= 1:
            dims.append(p.shape[-1])
        if p.ndim >= 2:
            dims.append(p.shape[-2])
    config = getattr(module, "config", None)
    if isinstance(getattr(config, "hidden_size", None), int):
        dims.append(config.hidden_size)
    dims.append(8)  # weightless leaves (a scaleless norm) take any width
    return list(dict.fromkeys(dims))[:4]


def _roles(module: nn.Module) -> dict[int, Operand]:
    known = {}
    for name, p in module.named_parameters():
        known[p._cdata] = Operand("param", name)
    for name, b in module.named_buffers():
        known.setdefault(b._cdata, Operand("buffer", name))
    return known


def _run(module: nn.Module, input_dtype: torch.dtype | None = None, *, with_tensors: bool = False) -> Probe:
    dtype = input_dtype or module_dtype(module)
    was_training = module.training
    module.train()  # LoRA and trainers run the training-mode forward
    errors = []
    try:
        for dim in ([None] if isinstance(module, nn.Embedding) else candidate_dims(module)):
            if dim is None:  # a lookup table takes token ids
                x = torch.zeros(1, TOKENS, dtype=torch.long, device="meta")
            else:
                x = torch.empty(1, TOKENS, dim, device="meta", dtype=dtype)
            # rotary tables as (cos, sin), as one complex table (Llama-4), then with every optional argument
            for rotary, masked in (("pair", False), ("complex", False), ("pair", True)):
                extra = {} if dim is None else _extra_arguments(module, x, with_tensors=with_tensors, rotary=rotary)
                if rotary == "complex" and "position_embeddings" not in extra:
                    continue  # the same call as the first
                if masked and (dim is None or not _complete_arguments(module, x, extra)):
                    break  # a lookup table is probed on its own input only
                recorder = Recorder({**_roles(module), x._cdata: Operand("input", "0"), **_argument_roles(extra)})
                recorder.trace.input_dtype = str(dtype).removeprefix("torch.")
                try:
                    with torch.no_grad(), warnings.catch_warnings(), recorder:
                        warnings.simplefilter("ignore")  # dtype-mismatch notices meant for real kernels
                        _forward(module, x, extra)
                except Exception as e:  # the wrong width, extra required arguments, data-dependent ops
                    errors.append(one_line(e))
                    if "position_embeddings" not in extra and not masked and not _completable(module, extra):
                        break
                    continue
                return Probe(recorder.trace, dim=dim)
    finally:
        module.train(was_training)
    return Probe(None, error=errors[0] if errors else "no input width to try")


def _forward(module: nn.Module, x: torch.Tensor, extra: dict):
    if _is_protocol_experts(module):
        from transformers.integrations.moe import batched_mm_experts_forward

        tokens = x.reshape(-1, x.shape[-1])
        top_k = 2
        index = torch.zeros(tokens.shape[0], top_k, dtype=torch.long, device="meta")
        weights = torch.empty(tokens.shape[0], top_k, dtype=x.dtype, device="meta")
        return batched_mm_experts_forward(module, tokens, index, weights)
    return module(x, **extra)


def _argument_roles(extra: dict) -> dict[int, Operand]:
    """Synthesised arguments are inputs named after their parameter (a tuple's items
    ``name.0``, ``name.1``), so a trace tells token ids or rotary tables from the input."""
    out = {}
    for name, value in extra.items():
        items = value if isinstance(value, tuple) else (value,)
        for i, item in enumerate(items):
            if isinstance(item, torch.Tensor):
                out[item._cdata] = Operand("input", name if len(items) == 1 else f"{name}.{i}")
    return out


def _extra_arguments(module: nn.Module, x: torch.Tensor, *, with_tensors: bool = False, rotary: str = "pair") -> dict:
    """Arguments after the input that transformers' attention needs: rotary
    ``position_embeddings`` as (cos, sin) over ``head_dim`` (required or not: a None
    default is unpacked unconditionally), token ids for an ``input_ids`` parameter (hash
    routers select experts by them), and None for any other required argument
    (``attention_mask``, ``alibi``); a forward that cannot take None fails the probe.
    ``with_tensors`` also feeds a tensor shaped like the input to the second parameter
    (a gated norm's gate), when it has no default other than None. ``rotary`` "pair"
    gives (cos, sin) over the rotary width (``qk_rope_head_dim`` for MLA, else
    ``head_dim``); "complex" gives one complex table over half of it (Llama-4)."""
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return {}
    out = {}
    rope = getattr(module, "qk_rope_head_dim", None)
    # MLA attention may keep only its rotary width (``qk_rope_head_dim``), no ``head_dim``
    head_dim = getattr(module, "head_dim", None)
    head_dim = head_dim if isinstance(head_dim, int) else rope
    for position, p in enumerate(parameters):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if with_tensors and position == 0 and p.default in (None, inspect.Parameter.empty):
            out[p.name] = torch.empty_like(x)
        elif p.name == "input_ids":
            out[p.name] = torch.zeros(x.shape[0], x.shape[1], dtype=torch.long, device="meta")
        elif p.name == "position_embeddings" and isinstance(head_dim, int):
            width = rope if isinstance(rope, int) and rope > 0 else head_dim
            if rotary == "complex":
                out[p.name] = torch.empty(x.shape[0], x.shape[1], width // 2, device="meta", dtype=torch.complex64)
            else:
                cos = torch.empty(x.shape[0], x.shape[1], width, device="meta", dtype=x.dtype)
                out[p.name] = (cos, torch.empty_like(cos))
        elif p.default is inspect.Parameter.empty:
            out[p.name] = None
    return out


def _completable(module: nn.Module, extra: dict) -> bool:
    """Whether :func:`_complete_arguments` would add anything."""
    return _complete_arguments(module, torch.empty(1, 1, 1, device="meta"), dict(extra))


def _complete_arguments(module: nn.Module, x: torch.Tensor, extra: dict) -> bool:
    """The arguments an attention forward may use although its signature lets them be None,
    filled in ``extra``: a zero 4-D ``attention_mask`` (a sparse-attention indexer folds its top-k into
    the mask it slices) and ``position_ids`` (attention temperature tuned by position).
    False when there is nothing to add (the retry would be the same call)."""
    try:
        names = set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return False
    if "attention_mask" not in names:
        return False  # not an attention: nothing it would slice or scale
    added = False
    if extra.get("attention_mask") is None:
        extra["attention_mask"] = torch.zeros(x.shape[0], 1, x.shape[1], x.shape[1], device="meta", dtype=x.dtype)
        added = True
    if "position_ids" in names and extra.get("position_ids") is None:
        extra["position_ids"] = torch.zeros(x.shape[0], x.shape[1], dtype=torch.long, device="meta")
        added = True
    return added


def _is_protocol_experts(module: nn.Module) -> bool:
    """transformers' experts protocol (``use_experts_implementation``): stacked weights,
    routing arguments, a ``_apply_gate`` for the GLU."""
    return hasattr(module, "_apply_gate") and hasattr(module, "has_gate") and hasattr(module, "is_transposed")
