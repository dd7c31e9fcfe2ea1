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

from ..probe.gates import Glu, find_glu
from ..probe.readings import NormReading, norm_reading, read
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

    def probe(self, module: nn.Module, *, input_dtype: torch.dtype | None = None, with_tensors: bool = False) -> Probe:
        """The probe of ``module`` (its own dtype, or ``input_dtype``); ``with_tensors``
        also feeds a second tensor argument when the forward takes one (a gated norm's gate)."""
        key = (cache_key(module), str(input_dtype), with_tensors)
        if key not in self._probes:
            with self._facts.timed("probe"):
                self._probes[key] = run_probe(module, input_dtype, with_tensors=with_tensors)
        return self._probes[key]

    def norm(self, module: nn.Module) -> NormReading:
        """The semantics of a normalising module (probed with bf16 input, where cast order
        shows, and with its gate when it takes one), confirmed numerically when it is small."""
        return self._reading(module, "norm", lambda: norm_reading(module, self._norm_probe(module)))

    def _norm_probe(self, module: nn.Module) -> Probe:
        result = self.probe(module, input_dtype=torch.bfloat16, with_tensors=True)
        return result if result.ok else self.probe(module, input_dtype=torch.bfloat16)

    def glu(self, module: nn.Module) -> Glu | None:
        """The GLU an MLP (or a stacked-experts module) computes, or None."""
        return self.read(module, find_glu)

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
