"""Does a checkpoint fit the model? transformers' own loader, fed header-only meta tensors.

``from_pretrained`` renames checkpoint keys and converts weights (per-expert MoE keys
stacked into one parameter, fused projections split...) in
``PreTrainedModel._load_pretrained_model`` with the transforms of
``get_model_conversion_mapping``, then ``_finalize_model_loading`` ties weights and drops
the keys the model ignores. archlint runs those same two functions on the meta model
(restored afterwards, :mod:`.in_place`; for a pre-quantized checkpoint on the copy the
quantizer converted, :mod:`.quantized`), with a state dict of *meta* tensors built from the
safetensors headers (the right names, shapes and dtypes, no data) and every parameter
placed on ``meta``: the conversions run on shapes only, and ``missing``/``unexpected``/
``mismatched`` are the loader's own sets, as ``from_pretrained(..., output_loading_info=True)``
reports them. The headers arrive shard by shard and reach the loader in batches of whole
loading groups (:func:`loading_info`).
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from .headers import Checkpoint, CheckpointUnreadable, Headers, TensorHeader, has_local_checkpoint, open_hub, open_local
from .in_place import restored_after
from .quantized import NotDriven, QuantizedLoader, quantized_loader

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
    quantization: dict[str, Any] | None = None  # a pre-quantized checkpoint: method, dequantize, notes
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
        if self.conversion_errors:
            out["conversion_errors"] = self.conversion_errors
        if self.quantization:
            out["quantization"] = self.quantization
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


def agreement(model: nn.Module, source: CheckpointSource) -> CheckpointAgreement:
    """Read the headers of ``source`` and run transformers' loader on them."""
    label = source.location if source.kind == "local" else f"{source.location}@{source.revision or 'main'}"
    result = CheckpointAgreement(label, config_dtype=_config_dtype(model))
    try:
        if source.kind == "local":
            checkpoint = open_local(source.location)
        elif source.offline:
            raise CheckpointUnreadable("--offline: the Hub's safetensors headers cannot be read")
        else:
            checkpoint = open_hub(source.location, source.revision)
    except CheckpointUnreadable as e:
        result.unavailable = str(e)
        return result
    return compare(model, checkpoint, result)


def compare(model: nn.Module, headers: Headers | Checkpoint,
            result: CheckpointAgreement | None = None) -> CheckpointAgreement:
    """Fill ``result`` with the loader's verdict on ``headers`` (read all at once, or an opened
    checkpoint whose headers are read one file at a time while the loader runs)."""
    result = result or CheckpointAgreement(headers.source, config_dtype=_config_dtype(model))
    tally = Tally()
    from transformers import PreTrainedModel

    from ..quantize.oracle import first_line
    from ..quantize.request import config_quantization

    try:
        if not isinstance(model, PreTrainedModel):
            tally.add_all(headers)
            result.unavailable = "not a transformers model: its loader cannot be asked"
            return tally.fill(result)
        shipped = config_quantization(getattr(model, "config", None))
        quantized = None
        if shipped is not None:  # blocks/scales keys: transformers' quantizer takes part in the loading
            try:
                quantized = quantized_loader(model, shipped)
            except NotDriven as e:
                tally.add_all(headers)
                result.unavailable = f"a pre-quantized checkpoint ({shipped.get('quant_method')}): {e}"
                return tally.fill(result)
            if quantized is not None:
                result.quantization = quantized.to_dict()
        try:
            info = loading_info(model, headers, tally=tally, quantized=quantized)
        except CheckpointUnreadable:
            raise
        except Exception as e:  # a conversion transformers cannot run on this checkpoint
            result.unavailable = f"transformers' loader failed on these headers: {type(e).__name__}: {first_line(e)}"
            return tally.fill(result)
    except CheckpointUnreadable as e:
        result.unavailable = str(e)
        return tally.fill(result)
    result.missing = sorted(info.missing_keys)
    result.unexpected = sorted(info.unexpected_keys)
    result.mismatched = sorted((k, list(a), list(b)) for k, a, b in info.mismatched_keys)
    result.conversion_errors = {k: _conversion_error(v) for k, v in sorted(info.conversion_errors.items())}
    return tally.fill(result)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")


def _conversion_error(text: str) -> str:
    """The loader's record of a failed conversion in one line: its closing ``Error: <op> on
    tensors destined for <key>...`` line and the exception that caused it."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    cause = next((line for line in reversed(lines[:-1]) if _EXCEPTION_LINE.match(line)), None)
    return f"{lines[-1]} ({cause})" if cause and lines else (lines[-1] if lines else "")


class Tally:
    """What the check reports about the headers themselves, counted as they pass: files,
    tensors, header bytes, and the bytes of floating-point tensors per stored dtype."""

    def __init__(self) -> None:
        self.files = self.tensors = self.header_bytes = 0
        self.sizes: Counter[str] = Counter()

    def add(self, header: TensorHeader) -> None:
        self.tensors += 1
        dtype = SAFETENSORS_DTYPES.get(header.dtype)
        if dtype is not None and dtype.is_floating_point:
            self.sizes[header.dtype] += _numel(header.shape) * dtype.itemsize

    def add_all(self, headers: Headers | Checkpoint) -> None:
        for _, records, size in _files_of(headers):
            self.files += 1
            self.header_bytes += size
            for record in records.values():
                self.add(record)

    def fill(self, result: CheckpointAgreement) -> CheckpointAgreement:
        result.files, result.tensors, result.header_bytes = self.files, self.tensors, self.header_bytes
        result.stored_dtypes = dict(self.sizes.most_common())
        return result


#: Checkpoint keys handed to the loader at once. The loader holds a sort key, a deferred
#: load and a target entry for every key it is given, so a checkpoint of tens of thousands
#: of per-expert tensors is fed in batches of whole loading groups (see :func:`_batches`).
BATCH_KEYS = 256


def loading_info(model: nn.Module, headers: Headers | Checkpoint, *, batch_keys: int | None = None,
                 tally: Tally | None = None, quantized: QuantizedLoader | None = None):
    """transformers' ``LoadStateDictInfo`` for loading ``headers`` into ``model``.

    The loader writes into the model itself, which is restored afterwards
    (:func:`.in_place.restored_after`) -- or, for a pre-quantized checkpoint, into the copy
    the quantizer converted (``quantized``, :func:`.quantized.quantized_loader`), with the
    quantizer and its conversions in the loader as in ``from_pretrained``. The keys go to
    ``_load_pretrained_model`` in batches, each batch a union of the groups the loader
    collects into one parameter (:func:`_batches`), so every conversion sees all its inputs
    at once; with an index, a group goes to the loader as soon as the last shard holding
    its layer has been read, so the headers are never all held. Each call starts from every
    model key missing and loads its batch into the same model; the batches' reports
    combine into the one a single call would give (missing: in no batch loaded;
    unexpected, mismatched, errors: from any batch), which ``_finalize_model_loading`` then
    completes (tied weights, ignored keys). ``tally`` counts the headers as they pass."""
    tally = tally or Tally()
    try:
        return _loading_info(model, headers, batch_keys or BATCH_KEYS, tally, quantized, planned=True)
    except _GroupSplit:  # the index placed a key in another shard than its header: read again, unplanned
        if quantized is not None:  # the converted copy has been written into: convert a new one
            quantized = quantized_loader(model, quantized.shipped)
        return _loading_info(model, headers, batch_keys or BATCH_KEYS, tally, quantized, planned=False)


def _loading_info(model: nn.Module, headers: Headers | Checkpoint, batch_keys: int, tally: Tally,
                  quantized: QuantizedLoader | None, *, planned: bool):
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.modeling_utils import LoadStateDictConfig

    from ..quantize.oracle import captured_logs

    tally.__init__()
    quantizer = quantized.quantizer if quantized is not None else None
    into = quantized.model if quantized is not None else model
    cls = type(into)
    entries = headers.index_entries() if planned and isinstance(headers, Checkpoint) else None
    last_file = _last_file(entries, headers.files) if entries is not None else {}
    del entries
    # reads the model, builds new transforms (the quantizer's own included)
    weight_mapping = get_model_conversion_mapping(into, None, quantizer)
    groups = _Groups(into, weight_mapping)
    info = None
    with (restored_after(into) if quantized is None else nullcontext(into)) as target, captured_logs(), \
            _loader_quiet_and_sequential(cls):
        dtype = _load_dtype(model)  # the unconverted model's (a quantized copy holds fp8/uint8 weights)
        if quantizer is not None:
            dtype = quantizer.update_dtype(dtype)
        config = LoadStateDictConfig(
            pretrained_model_name_or_path=headers.source,
            ignore_mismatched_sizes=True,
            device_map={"": "meta"},
            dtype=dtype,
            dtype_plan=target._get_dtype_plan(dtype),
            hf_quantizer=quantizer,
            weight_mapping=weight_mapping,
        )
        for batch in _batches(groups, headers, last_file, batch_keys, tally):
            state_dict = {name: _meta_tensor(name, record) for name, record in batch}
            del batch
            batch_info, _ = cls._load_pretrained_model(target, state_dict, None, config)
            del state_dict
            info = batch_info if info is None else _combine(info, batch_info)
        try:
            info = cls._finalize_model_loading(target, config, info)
        except RuntimeError:
            # from_pretrained raises here, after its report, when a conversion failed; the
            # report (``info``, completed by then) is the verdict
            if not info.conversion_errors:
                raise
    return info


class _GroupSplit(Exception):
    """A key arrived for a loading group that was already handed to the loader."""


class _Groups:
    """Which loading group a checkpoint key belongs to: the model key the loader's own
    ``rename_source_key`` sends it to, decided as ``convert_and_load_state_dict_in_model``
    decides it (renamings and converters first; the bare key, prefix adjusted, when that
    names no parameter but the key itself does). Keys of one group (the per-expert tensors
    the loader stacks, the parts it concatenates) must reach the loader together."""

    def __init__(self, model: nn.Module, weight_mapping) -> None:
        from transformers.core_model_loading import WeightConverter, WeightRenaming

        self.renamings = [m for m in weight_mapping or [] if isinstance(m, WeightRenaming)]
        self.converters = [m for m in weight_mapping or [] if isinstance(m, WeightConverter)]
        self.expected = model.state_dict()
        self.own = {key: key for key in self.expected}  # a group is named by the model's own string
        self.prefix = model.base_model_prefix

    def of(self, key: str) -> str:
        from transformers.core_model_loading import rename_source_key

        target, _ = rename_source_key(key, self.renamings, self.converters, self.prefix, self.expected)
        if target not in self.expected and key in self.expected:
            target, _ = rename_source_key(key, [], [], base_model_prefix=self.prefix, meta_state_dict=self.expected)
        return self.own.get(target, target)


#: A key's entry in a numbered stack: ``model.layers.3`` for ``model.layers.3.mlp.experts.7.up_proj.weight``.
_STACK_ENTRY = re.compile(r"(.*?\.\d+)\.")


def _stack_entry(key: str) -> str:
    """The numbered stack entry ``key`` sits in (``model.layers.3``), "" for a key in none."""
    match = _STACK_ENTRY.match(key)
    return match.group(1) if match else ""


def _last_file(entries: Iterator[tuple[str, str]], files: list[str]) -> dict[str, int]:
    """Per stack entry (:func:`_stack_entry`), the position in ``files`` of the last file the
    index puts one of its keys in (``entries``: the index's ``(key, file)`` pairs). The loader
    gathers a group's keys from one layer (the experts it stacks, the projections it fuses),
    so once that file is read every group of the entry is complete; :func:`_batches` checks
    that no key of a released group comes later."""
    position = {filename: i for i, filename in enumerate(files)}
    last: dict[str, int] = {}
    for key, filename in entries:
        entry = _stack_entry(key)
        last[entry] = max(last.get(entry, -1), position.get(filename, len(position)))
    return last


def _files_of(headers: Headers | Checkpoint) -> Iterator[tuple[str, dict[str, TensorHeader], int]]:
    """``(file, {name: record}, header bytes)`` per file: parsed one at a time from a
    :class:`Checkpoint`, regrouped from an already read :class:`Headers`."""
    if isinstance(headers, Headers):
        by_file: dict[str, dict[str, TensorHeader]] = {name: {} for name in headers.files}
        for name, record in headers.tensors.items():
            by_file.setdefault(record.file, {})[name] = record
        for i, (filename, records) in enumerate(by_file.items()):  # the bytes read are known in total only
            yield filename, records, headers.header_bytes if i == 0 else 0
        return
    for filename, header, size in headers.headers():
        collected = Headers(headers.source)
        collected.add_file(filename, header)
        del header
        yield filename, collected.tensors, size


def _batches(groups: _Groups, headers: Headers | Checkpoint, last_file: dict[str, int], size: int,
             tally: Tally) -> Iterator[list[tuple[str, TensorHeader]]]:
    """The checkpoint's ``(key, record)`` pairs in batches of about ``size``, never splitting a
    loading group (:class:`_Groups`).

    With ``last_file`` (from the index, :func:`_last_file`) a group is released as soon as
    the last file holding its stack entry has been read, so the headers are never all held;
    a key that arrives for a released group (the index placed it elsewhere than its header,
    or a conversion gathers keys across layers) raises :class:`_GroupSplit`. Without an
    index every group waits for the last file. Always yields at least one (possibly empty)
    batch, so an empty checkpoint still reports every parameter missing."""
    pending: dict[str, list[tuple[str, TensorHeader]]] = {}
    released: set[str] = set()
    batch: list[tuple[str, TensorHeader]] = []
    yielded = False
    for i, (_, records, nbytes) in enumerate(_files_of(headers)):
        tally.files += 1
        tally.header_bytes += nbytes
        for name, record in records.items():
            tally.add(record)
            group = groups.of(name)
            if group in released:
                raise _GroupSplit(name)
            pending.setdefault(group, []).append((name, record))
        del records
        complete = [g for g, keys in pending.items() if last_file.get(_stack_entry(keys[0][0]), sys.maxsize) <= i]
        for group in complete:
            keys = pending.pop(group)
            released.add(group)
            if batch and len(batch) + len(keys) > size:
                yield batch
                yielded, batch = True, []
            batch.extend(keys)
    for keys in pending.values():
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


@contextmanager
def _loader_quiet_and_sequential(cls) -> Iterator[None]:
    """While the loader runs on meta tensors: no progress bar; tensors materialised in the
    calling thread (``HF_DEACTIVATE_ASYNC_LOAD``, transformers' own switch: a thread pool
    per batch only copies meta tensors); and ``_initialize_missing_keys`` skipped -- it
    fills missing weights with random values, which on meta tensors computes nothing and
    does not touch the loading report, but costs its one-time setup."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with mock.patch.dict(os.environ, {"HF_DEACTIVATE_ASYNC_LOAD": "1"}), \
                mock.patch.object(cls, "_initialize_missing_keys", lambda self, is_quantized: None):
            yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _meta_tensor(name: str, header) -> torch.Tensor:
    dtype = SAFETENSORS_DTYPES.get(header.dtype)
    if dtype is None:
        raise CheckpointUnreadable(f"{header.file}: unknown safetensors dtype {header.dtype!r} for {name}")
    return torch.empty(header.shape, dtype=dtype, device="meta")


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
