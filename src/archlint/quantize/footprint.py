"""Bytes before and after quantization, from the converted copy and transformers' element sizes.

"before" is every parameter at the dtype the meta model was built with (the config's
dtype, as ``from_pretrained`` loads it); "after" is the converted copy, each quantized
parameter at ``quantizer.param_element_size`` (the size transformers itself budgets
with: 0.5 byte for 4-bit, 1 for int8/fp8, the packed uint8 blocks for MXFP4) and every
other parameter at its own dtype. Quantization statistics (absmax, scales) are not
counted. Tied parameters are counted once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class TensorBytes:
    """One parameter after conversion: its bytes and the label it is stored as."""

    name: str
    shape: tuple[int, ...]
    before: float
    after: float
    stored_as: str  # "nf4", "int8", "mxfp4", "float8_e4m3fn", or a torch dtype name
    quantized: bool


def tensor_bytes(original: nn.Module, converted: nn.Module, quantizer, quantized: set[str],
                 label: str) -> list[TensorBytes]:
    """One row per parameter of the converted copy (tied parameters once)."""
    before_sizes = _sizes(original)
    rows = []
    seen: set[int] = set()
    for name, p in converted.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        is_q = name in quantized
        after = p.numel() * (quantizer.param_element_size(converted, name, p) if is_q else p.element_size())
        before = before_sizes.get(name, p.numel() * p.element_size() if not is_q else 0)
        rows.append(TensorBytes(name, tuple(p.shape), float(before), float(after),
                                label if is_q else str(p.dtype).removeprefix("torch."), is_q))
    missing = set(before_sizes) - {r.name for r in rows}  # replaced by new names (e.g. MXFP4 blocks)
    for name in missing:
        rows.append(TensorBytes(name, (), float(before_sizes[name]), 0.0, "replaced", False))
    return rows


def _sizes(model: nn.Module) -> dict[str, int]:
    out = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out[name] = p.numel() * p.element_size()
    return out


def totals(rows: list[TensorBytes]) -> dict[str, Any]:
    """``{"before", "after", "by_dtype"}`` in bytes (after, grouped by stored label)."""
    by_dtype: dict[str, float] = defaultdict(float)
    for r in rows:
        if r.stored_as != "replaced":
            by_dtype[r.stored_as] += r.after
    return {
        "before": int(sum(r.before for r in rows)),
        "after": int(sum(r.after for r in rows)),
        "by_dtype": {k: int(v) for k, v in sorted(by_dtype.items(), key=lambda kv: -kv[1])},
    }


def by_tower(rows: list[TensorBytes], tower_of) -> list[dict[str, Any]]:
    """The footprint table: per tower, bytes before/after and what stays in high precision."""
    groups: dict[str, list[TensorBytes]] = defaultdict(list)
    for r in rows:
        groups[tower_of(r.name)].append(r)
    table = []
    for tower, items in sorted(groups.items()):
        t = totals(items)
        kept_high = sum(r.after for r in items if not r.quantized and r.stored_as != "replaced")
        table.append({"tower": tower, "before": t["before"], "after": t["after"],
                      "unquantized": int(kept_high), "by_dtype": t["by_dtype"]})
    return table


def storage_label(qconfig) -> str:
    """How the method stores a quantized weight, for ``by_dtype``."""
    method = str(getattr(qconfig.quant_method, "value", qconfig.quant_method))
    if method == "bitsandbytes":
        if getattr(qconfig, "load_in_4bit", False):
            return str(getattr(qconfig, "bnb_4bit_quant_type", "nf4"))
        return "int8"
    if method == "fp8":
        return "float8_e4m3fn"
    return method
