"""Probe readings: what one module's recorded forward says it computes, per module.

Probing costs a forward on meta tensors, so a module is probed only when a rule asks,
and once per lint for every set of modules that provably behave alike
(:class:`archlint.probe.alike.ProbeMemo`): 30 layers that differ only in an index their
forward does not read cost one probe. All time goes to the ``probe`` phase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ..probe.alike import ProbeMemo
from ..probe.gates import Glu, find_glu
from ..probe.readings import NormReading, norm_reading, read
from ..probe.run import Probe, cache_key, run_probe
from ..probe.trace import Trace
from .base import Facts, fact

T = TypeVar("T")


class ProbeReadings:
    """The probes of one lint and the readings made from them: a reading of the trace alone
    once per probe, a reading that also runs the module once per module signature."""

    def __init__(self, facts: Facts):
        self._facts = facts
        self._memo = ProbeMemo(run_probe)
        self._readings: dict[tuple[object, str], object] = {}

    def probe(self, module: nn.Module, *, input_dtype: torch.dtype | None = None, with_tensors: bool = False) -> Probe:
        """The probe of ``module`` (its own dtype, or ``input_dtype``); ``with_tensors``
        also feeds a second tensor argument when the forward takes one (a gated norm's gate)."""
        with self._facts.timed("probe"):
            return self._memo.probe(module, input_dtype, with_tensors=with_tensors)

    def norm(self, module: nn.Module) -> NormReading:
        """The semantics of a normalising module (probed with bf16 input, where cast order
        shows, and with its gate when it takes one), confirmed numerically when it is small."""
        # the numeric check runs the module itself: once per signature, not per shared probe
        key = (cache_key(module), "norm")
        if key not in self._readings:
            with self._facts.timed("probe"):
                self._readings[key] = norm_reading(module, self._norm_probe(module))
        return self._readings[key]  # type: ignore[return-value]

    def _norm_probe(self, module: nn.Module) -> Probe:
        result = self.probe(module, input_dtype=torch.bfloat16, with_tensors=True)
        return result if result.ok else self.probe(module, input_dtype=torch.bfloat16)

    def glu(self, module: nn.Module) -> Glu | None:
        """The GLU an MLP (or a stacked-experts module) computes, or None."""
        return self.read(module, find_glu)

    def read(self, module: nn.Module, reader: Callable[[Trace], T]) -> T | None:
        """``reader(trace)`` of the module's probe; None when there is no reading."""
        name = f"{reader.__module__}.{reader.__qualname__}"
        result = self.probe(module)
        key = (id(result), name)  # the memo keeps every probe alive: its id is not reused
        if key not in self._readings:
            with self._facts.timed("probe"):
                self._readings[key] = read(result, reader)
        return self._readings[key]  # type: ignore[return-value]


@fact(phase="probe")
def probes(facts: Facts) -> ProbeReadings:
    """The probe readings of this lint (each computed when first asked for)."""
    return ProbeReadings(facts)
