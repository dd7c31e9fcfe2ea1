"""Readings: what a probe says about a module, for the facts rules read (:mod:`archlint.facts.probes`).

A *reading* combines the probe of one module, the analysis of its trace and, where the
question needs values, a numeric check of a tiny CPU copy. Every reading carries the
confidence it deserves: numerically confirmed (high), read from the trace only (medium),
or unavailable (None, with the probe's error) -- the caller then falls back to what
structure alone says, at low confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from ..findings import Confidence
from .norms import NormSemantics, read_norm
from .numeric import confirm_rms
from .run import Probe
from .trace import Trace

T = TypeVar("T")


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


def norm_reading(module: nn.Module, result: Probe) -> NormReading:
    """The semantics of a normalising module from its (bf16-input) probe, confirmed
    numerically on a tiny CPU copy when it is an RMS norm."""
    if not result.ok:
        return NormReading(None, Confidence.LOW, error=result.error)
    semantics = read_norm(result.trace)
    if semantics is None:
        return NormReading(None, Confidence.LOW, error="the forward normalises nothing recognisable")
    if semantics.kind != "rms" or not semantics.plain:
        return NormReading(semantics, Confidence.MEDIUM)  # no reference formula to check a gate or groups against
    try:
        numeric = confirm_rms(module, semantics, result.dim)
    except Exception:  # a CPU copy that cannot run: keep the trace's reading
        numeric = None
    if numeric is None:
        return NormReading(semantics, Confidence.MEDIUM)
    confidence = Confidence.HIGH if numeric["matches_reference"] else Confidence.LOW
    equivalent = "torch.nn.RMSNorm" if numeric["equivalent_to_torch"] else None
    return NormReading(semantics, confidence, equivalent, numeric)


def read(result: Probe, reader: Callable[[Trace], T]) -> T | None:
    """``reader(trace)`` of a probe; None when the probe failed or the reader could not
    make sense of an unusual trace (a reading is evidence, never a crash)."""
    if not result.ok:
        return None
    try:
        return reader(result.trace)
    except Exception:
        return None
