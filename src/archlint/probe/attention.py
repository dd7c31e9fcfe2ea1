"""Gated attention outputs, read from a probe trace of an attention module."""

from __future__ import annotations

from dataclasses import dataclass

from .gates import projection_ops
from .trace import Operand, Trace

_ATTENTION_CORE = ("scaled_dot_product", "_softmax", "softmax", "_safe_softmax")
_GATES = {"sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu"}


@dataclass(frozen=True)
class OutputGate:
    activation: str
    projection: str | None  # the parameter the gate is computed by, when one is


def find_output_gate(trace: Trace) -> OutputGate | None:
    """A ``mul`` after the attention core (SDPA or the last softmax) between the
    attention output and ``sigmoid``/``tanh`` of a value computed from the input alone."""
    cores = [op.index for op in trace.ops if op.name.lstrip("_").startswith(_ATTENTION_CORE[0])
             or op.name in _ATTENTION_CORE[1:]]
    if not cores:
        return None
    core = cores[-1]
    projections = projection_ops(trace)
    for op in trace.ops[core + 1:]:
        if op.name != "mul" or len(op.tensors) != 2:
            continue
        after = [_depends_on(trace, t, core) for t in op.tensors]
        if after.count(True) != 1:
            continue
        gate = op.tensors[after.index(False)]
        if ("input", "0") not in trace.roots(gate):
            continue
        activation = next((_GATES[u.name] for u in trace.upstream(gate)[:4] if u.name in _GATES), None)
        if activation is None:
            continue
        projection = next((projections[u.index].weight for u in trace.upstream(gate) if u.index in projections), None)
        return OutputGate(activation, projection)
    return None


def _depends_on(trace: Trace, operand: Operand, index: int) -> bool:
    return any(op.index == index for op in trace.upstream(operand))
