"""Does a checkpoint fit the model? transformers' own loader, fed header-only meta tensors.

``from_pretrained`` renames checkpoint keys and converts weights (per-expert MoE keys
stacked into one parameter, fused projections split...) in
``PreTrainedModel._load_pretrained_model`` with the transforms of
``get_model_conversion_mapping``, then ``_finalize_model_loading`` ties weights and drops
the keys the model ignores. archlint runs those same two functions on a copy of the meta
model, with a state dict of *meta* tensors built from the safetensors headers (the
right names, shapes and dtypes, no data) and every parameter placed on ``meta``: the
conversions run on shapes only, and ``missing``/``unexpected``/``mismatched`` are the
loader's own sets, as ``from_pretrained(..., output_loading_info=True)`` reports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .headers import CheckpointUnreadable, Headers, has_local_checkpoint, read_hub, read_local

#: safetensors dtype names -> torch dtypes (the format's own table).
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    **({"F8_E8M0": torch.float8_e8m0fnu} if hasattr(torch, "float8_e8m0fnu") else {}),
    **({"U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64} if hasattr(torch, "uint16") else {}),
}


@dataclass(frozen=True)
class CheckpointSource:
    """Where headers come from: a local folder, or a Hub repository (opt-in)."""

    kind: str  # "local" | "hub"
    location: str  # folder path or repo id
    revision: str | None = None
    offline: bool = False  # --offline: a Hub checkpoint is then reported as not checked


def checkpoint_source(spec, *, hub: bool, offline: bool = False) -> CheckpointSource | None:
    """The checkpoint of a resolved target: a local folder holding safetensors, or (with
    ``hub``) the Hub repository the config came from."""
    if spec.kind == "local" and spec.config_file:
        folder = Path(spec.config_file).parent
        if has_local_checkpoint(folder):
            return CheckpointSource("local", str(folder))
    if spec.kind == "hub" and hub:
        repo = spec.target.partition("@")[0]
        return CheckpointSource("hub", repo, spec.revision, offline=offline)
    return None


@dataclass
class CheckpointAgreement:
    """What transformers' loader would report for this checkpoint on this model."""

    source: str
    files: int = 0
    tensors: int = 0
    header_bytes: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, list[int], list[int]]] = field(default_factory=list)  # key, checkpoint, model
    conversion_errors: dict[str, str] = field(default_factory=dict)
    stored_dtypes: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> bytes of floating tensors
    config_dtype: str | None = None
    unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "files": self.files,
            "tensors": self.tensors,
            "header_bytes": self.header_bytes,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": [[k, list(a), list(b)] for k, a, b in self.mismatched],
            "stored_dtypes": self.stored_dtypes,
            "config_dtype": self.config_dtype,
        }
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


def agreement(model: nn.Module, source: CheckpointSource) -> CheckpointAgreement:
    """Read the headers of ``source`` and run transformers' loader on them."""
    label = source.location if source.kind == "local" else f"{source.location}@{source.revision or 'main'}"
    result = CheckpointAgreement(label, config_dtype=_config_dtype(model))
    try:
        if source.kind == "local":
            headers = read_local(source.location)
        elif source.offline:
            raise CheckpointUnreadable("--offline: the Hub's safetensors headers cannot be read")
        else:
            headers = read_hub(source.location, source.revision)
    except CheckpointUnreadable as e:
        result.unavailable = str(e)
        return result
    return compare(model, headers, result)


def compare(model: nn.Module, headers: Headers, result: CheckpointAgreement | None = None) -> CheckpointAgreement:
    """Fill ``result`` with the loader's verdict on ``headers``."""
    result = result or CheckpointAgreement(headers.source, config_dtype=_config_dtype(model))
    result.files, result.tensors, result.header_bytes = len(headers.files), len(headers.tensors), headers.header_bytes
    sizes: Counter[str] = Counter()
    for t in headers.tensors.values():
        dtype = SAFETENSORS_DTYPES.get(t.dtype)
        if dtype is not None and dtype.is_floating_point:
            sizes[t.dtype] += _numel(t.shape) * dtype.itemsize
    result.stored_dtypes = dict(sizes.most_common())
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        result.unavailable = "not a transformers model: its loader cannot be asked"
        return result
    from ..quantize.request import config_quantization

    shipped = config_quantization(getattr(model, "config", None))
    if shipped is not None:  # blocks/scales keys only the quantizer's deserializers account for
        result.unavailable = (f"a pre-quantized checkpoint ({shipped.get('quant_method')}): its serialized keys are "
                              "matched by transformers' quantizer at load time, which archlint does not drive yet")
        return result
    try:
        info = loading_info(model, headers)
    except Exception as e:  # a conversion transformers cannot run on this checkpoint
        from ..quantize.oracle import first_line

        result.unavailable = f"transformers' loader failed on these headers: {type(e).__name__}: {first_line(e)}"
        return result
    result.missing = sorted(info.missing_keys)
    result.unexpected = sorted(info.unexpected_keys)
    result.mismatched = sorted((k, list(a), list(b)) for k, a, b in info.mismatched_keys)
    result.conversion_errors = {k: v.strip().splitlines()[-1] for k, v in info.conversion_errors.items()}
    return result


#: Checkpoint keys handed to the loader at once. The loader holds a sort key, a deferred
#: load and a target entry for every key it is given, so a checkpoint of tens of thousands
#: of per-expert tensors is fed in batches of whole loading groups (see :func:`_batches`).
BATCH_KEYS = 1024


def loading_info(model: nn.Module, headers: Headers, *, batch_keys: int | None = None):
    """transformers' ``LoadStateDictInfo`` for loading ``headers`` into a copy of ``model``.

    The keys go to ``_load_pretrained_model`` in batches, each batch a union of the groups
    the loader collects into one parameter (:func:`_batches`), so every conversion sees all
    its inputs at once. Each call starts from every model key missing and loads its batch
    into the same copy; the batches' reports combine into the one a single call would give
    (missing: in no batch loaded; unexpected, mismatched, errors: from any batch), which
    ``_finalize_model_loading`` then completes (tied weights, ignored keys)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.modeling_utils import LoadStateDictConfig

    from ..quantize.oracle import captured_logs

    copy = _fresh_copy(model)
    dtype = _load_dtype(copy)
    config = LoadStateDictConfig(
        pretrained_model_name_or_path=headers.source,
        ignore_mismatched_sizes=True,
        device_map={"": "meta"},
        dtype=dtype,
        dtype_plan=copy._get_dtype_plan(dtype),
        weight_mapping=get_model_conversion_mapping(copy, None, None),
    )
    cls = type(copy)
    info = None
    with captured_logs(), _no_progress_bar():
        for names in _batches(copy, headers, config.weight_mapping, batch_keys or BATCH_KEYS):
            state_dict = {name: _meta_tensor(name, headers.tensors[name]) for name in names}
            batch_info, _ = cls._load_pretrained_model(copy, state_dict, None, config)
            del state_dict
            info = batch_info if info is None else _combine(info, batch_info)
        info = cls._finalize_model_loading(copy, config, info)
    return info


def _batches(model: nn.Module, headers: Headers, weight_mapping, size: int) -> Iterator[list[str]]:
    """The checkpoint's keys in batches of about ``size``, never splitting a loading group.

    A group is the keys the loader gathers into one parameter (the per-expert tensors it
    stacks, the parts it concatenates): keys the loader's own ``rename_source_key`` sends
    to the same model key, decided as ``convert_and_load_state_dict_in_model`` decides it
    (renamings and converters first; the bare key, prefix adjusted, when that names no
    parameter but the key itself does). Always yields at least one (possibly empty) batch,
    so an empty checkpoint still reports every parameter missing."""
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    renamings = [m for m in weight_mapping or [] if isinstance(m, WeightRenaming)]
    converters = [m for m in weight_mapping or [] if isinstance(m, WeightConverter)]
    expected = model.state_dict()
    prefix = model.base_model_prefix
    groups: dict[str, list[str]] = {}
    for key in headers.tensors:
        target, _ = rename_source_key(key, renamings, converters, prefix, expected)
        if target not in expected and key in expected:
            target, _ = rename_source_key(key, [], [], base_model_prefix=prefix, meta_state_dict=expected)
        groups.setdefault(target, []).append(key)
    del expected
    batch: list[str] = []
    yielded = False
    for keys in groups.values():
        if batch and len(batch) + len(keys) > size:
            yield batch
            yielded, batch = True, []
        batch.extend(keys)
    if batch or not yielded:
        yield batch


def _combine(total, batch):
    """One loading report from two batches' reports on the same model."""
    total.missing_keys &= batch.missing_keys
    total.unexpected_keys |= batch.unexpected_keys
    total.mismatched_keys |= batch.mismatched_keys
    total.skipped_pp_keys |= batch.skipped_pp_keys
    total.conversion_errors.update(batch.conversion_errors)
    total.error_msgs.extend(batch.error_msgs)
    return total


def _meta_tensor(name: str, header) -> torch.Tensor:
    dtype = SAFETENSORS_DTYPES.get(header.dtype)
    if dtype is None:
        raise CheckpointUnreadable(f"{header.file}: unknown safetensors dtype {header.dtype!r} for {name}")
    return torch.empty(header.shape, dtype=dtype, device="meta")


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _config_dtype(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    dtype = getattr(config, "dtype", None) if config is not None else None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else None


def _load_dtype(model: nn.Module) -> torch.dtype:
    dtype = getattr(model, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def _fresh_copy(model: nn.Module) -> nn.Module:
    from ..lora.oracle import fresh_copy

    return fresh_copy(model)
