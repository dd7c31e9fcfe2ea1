"""Probe readings: what one module's recorded forward says it computes, per module.

Probing costs a forward on meta tensors, so a module is probed only when a rule asks,
and once per lint for every module of the same signature (:func:`archlint.probe.run.cache_key`):
30 identical layers cost one probe. All time goes to the ``probe`` phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ..probe.attention import OutputGate, find_output_gate
from ..probe.gates import Glu, find_glu
from ..probe.readings import NormReading, norm_reading, read
from ..probe.routers import Router, read_router
from ..probe.run import Probe, cache_key, run_probe
from ..probe.trace import Trace
from .base import Facts, fact

T = TypeVar("T")


class ProbeReadings:
    """The probes of one lint and the readings made from them, cached per module signature."""

    def __init__(self, facts: Facts):
        self._facts = facts
        self._probes: dict[tuple[str, str], Probe] = {}
        self._readings: dict[tuple[str, str], object] = {}

    def probe(self, module: nn.Module, *, input_dtype: torch.dtype | None = None) -> Probe:
        """The probe of ``module`` (its own dtype, or ``input_dtype``)."""
        key = (cache_key(module), str(input_dtype))
        if key not in self._probes:
            with self._facts.timed("probe"):
                self._probes[key] = run_probe(module, input_dtype)
        return self._probes[key]

    def norm(self, module: nn.Module) -> NormReading:
        """The semantics of a normalising module (probed with bf16 input, where cast order
        shows), confirmed numerically when it is small."""
        def read():
            return norm_reading(module, self.probe(module, input_dtype=torch.bfloat16))

        return self._reading(module, "norm", read)

    def glu(self, module: nn.Module) -> Glu | None:
        """The GLU an MLP (or a stacked-experts module) computes, or None."""
        return self.read(module, find_glu)

    def router(self, module: nn.Module) -> Router | None:
        """The routing a module computes (projection + top-k and any extras), or None."""
        return self.read(module, read_router)

    def output_gate(self, module: nn.Module) -> OutputGate | None:
        """The input-dependent gate an attention multiplies its output by, or None."""
        return self.read(module, find_output_gate)

    def read(self, module: nn.Module, reader: Callable[[Trace], T]) -> T | None:
        """``reader(trace)`` of the module's probe; None when there is no reading."""
        name = f"{reader.__module__}.{reader.__qualname__}"
        return self._reading(module, name, lambda: read(self.probe(module), reader))

    def _reading(self, module: nn.Module, name: str, compute: Callable[[], T]) -> T:
        key = (cache_key(module), name)
        if key not in self._readings:
            with self._facts.timed("probe"):
                self._readings[key] = compute()
        return self._readings[key]  # type: ignore[return-value]


@fact(phase="probe")
def probes(facts: Facts) -> ProbeReadings:
    """The probe readings of this lint (each computed when first asked for)."""
    return ProbeReadings(facts)
