"""Fused projections: into how many parts a projection's output is cut, from a probe trace."""

from __future__ import annotations

from .gates import projection_ops
from .trace import SPLIT_OPS, VIEW_OPS, Trace


def output_parts(trace: Trace, weight: str) -> int | None:
    """Into how many parts the output of the projection by parameter ``weight`` is cut
    (``split``/``chunk``/``unbind``/slices, after reshapes and a bias add); 1 when it is
    used whole, None when no projection uses that parameter."""
    projections = [p.op for p in projection_ops(trace).values() if p.weight == weight]
    if not projections:
        return None
    frontier, seen, parts = list(projections), set(), set()
    while frontier:
        index = frontier.pop()
        if index in seen:
            continue
        seen.add(index)
        for op in trace.consumers(index):
            if op.name in SPLIT_OPS or op.name == "index":
                if op.name in ("slice", "select", "narrow", "index"):
                    parts.add((op.index, ""))
                else:  # one op, several outputs: count the outputs that are read
                    parts |= {(op.index, c.name) for o in trace.consumers(op.index) for c in o.tensors
                              if c.kind == "op" and c.op == op.index}
            elif op.name in VIEW_OPS or (op.name in ("add", "add_") and len(op.tensors) == 2
                                          and op.index not in projections
                                          and any(t.kind == "param" for t in op.tensors)):
                frontier.append(op.index)
    return len(parts) or 1
