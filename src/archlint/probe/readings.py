"""What rules ask of the probe, each answer cached per probed module signature.

A *reading* combines the probe of one module, the analysis of its trace and, where the
question needs values, a numeric check of a tiny CPU copy. Every reading carries the
confidence it deserves: numerically confirmed (high), read from the trace only (medium),
or unavailable (None, with the probe's error) -- the caller then falls back to what
structure alone says, at low confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..findings import Confidence
from .attention import OutputGate, find_output_gate
from .gates import Glu, find_glu
from .norms import NormSemantics, read_norm
from .numeric import confirm_rms
from .routers import Router, read_router
from .run import cache_key, probe


@dataclass(frozen=True)
class NormReading:
    semantics: NormSemantics | None
    confidence: Confidence
    equivalent_to: str | None = None
    numeric: dict | None = None
    error: str = ""

    @property
    def contradicted(self) -> bool:
        """The numeric check ran and the module does not compute what the trace read."""
        return bool(self.numeric) and not self.numeric["matches_reference"]

    def details(self) -> dict:
        if self.semantics is None:
            return {"semantics": "unprobed", "probe_error": self.error}
        out = self.semantics.to_dict()
        out["equivalent_to"] = self.equivalent_to
        out["numeric_check"] = self.numeric
        return out


def norm_reading(ctx, module: nn.Module) -> NormReading:
    """The semantics of a normalising module, confirmed numerically when it is small."""
    cache = ctx.memo("norm-readings", dict)
    key = cache_key(module)
    if key not in cache:
        cache[key] = _norm_reading(ctx, module)
    return cache[key]


def _norm_reading(ctx, module: nn.Module) -> NormReading:
    # a second tensor argument (a gated norm's gate) is fed when the forward takes one
    result = probe(ctx, module, input_dtype=torch.bfloat16, with_tensors=True)
    if not result.ok:
        result = probe(ctx, module, input_dtype=torch.bfloat16)
    if not result.ok:
        return NormReading(None, Confidence.LOW, error=result.error)
    semantics = read_norm(result.trace)
    if semantics is None:
        return NormReading(None, Confidence.LOW, error="the forward normalises nothing recognisable")
    if semantics.kind != "rms" or not semantics.plain:
        return NormReading(semantics, Confidence.MEDIUM)  # no reference formula to check a gate or groups against
    with ctx.timed("probe"):
        try:
            numeric = confirm_rms(module, semantics, result.dim)
        except Exception:  # a CPU copy that cannot run: keep the trace's reading
            numeric = None
    if numeric is None:
        return NormReading(semantics, Confidence.MEDIUM)
    confidence = Confidence.HIGH if numeric["matches_reference"] else Confidence.LOW
    equivalent = "torch.nn.RMSNorm" if numeric["equivalent_to_torch"] else None
    return NormReading(semantics, confidence, equivalent, numeric)


def glu_reading(ctx, module: nn.Module) -> Glu | None:
    """The GLU an MLP (or a stacked-experts module) computes, or None."""
    return read(ctx, module, find_glu)


def router_reading(ctx, module: nn.Module) -> Router | None:
    """The routing a module computes (projection + top-k and any extras), or None."""
    return read(ctx, module, read_router)


def read(ctx, module: nn.Module, reader):
    """``reader(trace)`` of the module's probe; None when the probe failed or the reader
    could not make sense of an unusual trace (a reading is evidence, never a crash)."""
    result = probe(ctx, module)
    if not result.ok:
        return None
    try:
        return reader(result.trace)
    except Exception:
        return None


def output_gate_reading(ctx, module: nn.Module) -> OutputGate | None:
    """The input-dependent gate an attention multiplies its output by, or None."""
    return read(ctx, module, find_output_gate)


def role_map(ctx):
    """The roles of this model's projections, read from one trace per distinct block."""
    from .role_map import RoleMap

    return ctx.memo("role-map", lambda: RoleMap(ctx.graph, lambda module: probe(ctx, module)))
