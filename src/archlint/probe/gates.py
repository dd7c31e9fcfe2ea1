"""Gated MLPs (GLU variants), read from a probe trace.

A GLU is a ``mul`` whose two operands come from two projections of the input -- two
weights (split) or two parts of one projection's output (fused: a ``slice``/``chunk``
after it) -- with a nonlinearity on one side only. The activation is named by the ops on
that side (``silu``; ``gelu`` with its ``approximate`` argument; ``x * sigmoid(a * x)``;
``relu`` then square), and any clamp or constant added on either side is reported.

``projection_ops`` (which op projects by which parameter) is shared with the router,
fused-projection and attention-gate readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .trace import SPLIT_OPS, VIEW_OPS, Op, Operand, Trace

PROJECTIONS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_grouped_mm", "einsum"})
ACTIVATIONS = frozenset({"silu", "gelu", "sigmoid", "relu", "tanh", "mish", "softplus", "elu", "leaky_relu",
                         "hardswish"})
_PASS = VIEW_OPS | {"index", "_to_copy", "clamp", "clamp_min", "clamp_max", "add", "add_", "mul", "squeeze",
                    "unsqueeze"}


@dataclass(frozen=True)
class Projection:
    op: int
    weight: str  # the parameter's name under the probed module ("gate_proj.weight", "gate_up_proj")


@dataclass(frozen=True)
class Glu:
    activation: str  # "silu", "gelu_tanh", "gelu", "sigmoid", "relu2", "swish(alpha=1.702)", ...
    gate: Projection
    up: Projection
    fused: bool
    clamps: tuple[tuple[str, object, object], ...] = ()  # (side, min, max): a number, None, or a buffer's name
    up_offset: float = 0.0
    layout: str = "split"  # "split" | "halves" ([gate; up]) | "interleaved" (gate0, up0, gate1, ...)

    @property
    def canonical(self) -> bool:
        return self.activation == "silu" and not self.fused and not self.clamps and not self.up_offset

    @property
    def variant(self) -> str:
        names = {"silu": "SwiGLU", "gelu_tanh": "GeGLU (tanh-approximate GELU)", "gelu": "GeGLU (exact erf GELU)",
                 "sigmoid": "GLU (sigmoid)", "relu": "ReGLU", "relu2": "ReLU²-GLU"}
        name = names.get(self.activation, f"GLU with {self.activation}")
        if self.activation.startswith("swish"):
            name = f"SwiGLU variant x·σ({self.activation.split('=')[1].rstrip(')')}·x)"
        extras = []
        if self.fused:
            extras.append(f"fused gate/up projection, {self.layout}")
        for side, lo, hi in self.clamps:
            extras.append(f"{side} {_clamp_text(lo, hi)}")
        if self.up_offset:
            extras.append(f"up + {self.up_offset:g}")
        return name + (f" ({', '.join(extras)})" if extras else "")


def projection_ops(trace: Trace) -> dict[int, Projection]:
    out = {}
    for op in trace.ops:
        if op.name not in PROJECTIONS:
            continue
        for t in op.tensors:
            origin = trace.origin(t, through=VIEW_OPS | {"index", "_to_copy"})
            if origin.kind == "param" and len(origin.shape) >= 2:
                out[op.index] = Projection(op.index, origin.name)
                break
    return out


def find_glu(trace: Trace) -> Glu | None:
    projections = projection_ops(trace)
    for op in trace.ops:
        if op.name != "mul" or len(op.tensors) != 2:
            continue
        a, b = (_branch(trace, t, projections) for t in op.tensors)
        if a is None or b is None or a.source == b.source:
            continue  # not two projections, or both sides of one activation (x * sigmoid(x))
        act_a, act_b = _activation(trace, a), _activation(trace, b)
        if bool(act_a) == bool(act_b):
            continue
        gate, up = (a, b) if act_a else (b, a)
        return Glu(
            activation=act_a or act_b,
            gate=gate.projection,
            up=up.projection,
            fused=gate.projection.op == up.projection.op,
            clamps=tuple(("gate", lo, hi) for lo, hi in gate.clamps) + tuple(("up", lo, hi) for lo, hi in up.clamps),
            up_offset=sum(up.offsets),
            layout=_layout(trace, gate) if gate.projection.op == up.projection.op else "split",
        )
    return None


def _bound(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else f"`{value}`"


def _unbounded(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isinf(value))


def _clamp_text(lo, hi) -> str:
    """A clamp in words: an absent or infinite bound is no bound, not ``-inf``."""
    if _unbounded(lo):
        return f"clamped to at most {_bound(hi)} (no lower bound)"
    if _unbounded(hi):
        return f"clamped to at least {_bound(lo)} (no upper bound)"
    return f"clamped to [{_bound(lo)}, {_bound(hi)}]"


def _layout(trace: Trace, gate: _Branch) -> str:
    op = trace.ops[gate.source[0]]
    step = op.args[4].value if op.name == "slice" and len(op.args) > 4 and op.args[4].kind == "scalar" else 1
    return "interleaved" if step and step > 1 else "halves"


@dataclass
class _Branch:
    projection: Projection
    source: tuple[int, str]  # the op (and output) the branch starts from: a split part or the projection
    ops: list[Op] = field(default_factory=list)
    clamps: list[tuple[float | None, float | None]] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)


def _branch(trace: Trace, operand: Operand, projections: dict[int, Projection]) -> _Branch | None:
    """Walk back from ``operand`` along its input-carrying chain to a projection."""
    ops: list[Op] = []
    source = None
    current = operand
    for _ in range(40):
        if current.kind != "op":
            return None
        op = trace.ops[current.op]
        if op.index in projections:
            return _finish(trace, projections[op.index], source or (op.index, ""), ops)
        if op.name in SPLIT_OPS and source is None:
            source = (op.index, current.name)
        ops.append(op)
        carriers = [t for t in op.tensors if ("input", "0") in trace.roots(t)]
        if not carriers:
            return None
        current = carriers[0]
    return None


def _finish(trace, projection, source, ops) -> _Branch:
    branch = _Branch(projection, source, ops)
    for op in ops:
        if op.name in ("clamp", "clamp_min", "clamp_max") and not op.unbounded_clamp:
            bounds = [a.value if a.kind == "scalar" else a.name if a.kind in ("buffer", "param") else None
                      for a in op.args[1:3]]
            if op.name == "clamp_min":
                bounds = [bounds[0], None]
            elif op.name == "clamp_max":
                bounds = [None, bounds[0]]
            bounds += [None] * (2 - len(bounds))
            branch.clamps.append((bounds[0], bounds[1]))
        elif op.name in ("add", "add_") and op.scalars and len(op.tensors) == 1:
            branch.offsets.append(float(op.scalars[0]))
    return branch


def _activation(trace: Trace, branch: _Branch) -> str | None:
    names = [op.name for op in branch.ops]
    for op in branch.ops:
        if op.name == "gelu":
            return "gelu_tanh" if op.kwarg("approximate", "none") == "tanh" else "gelu"
        if op.name == "silu":
            return "silu"
        if op.name == "relu":
            return "relu2" if "pow" in names or _squares(branch.ops) else "relu"
    # x * sigmoid(alpha * x), written out (gpt-oss)
    for op in branch.ops:
        if op.name == "mul" and len(op.tensors) == 2:
            ups = [trace.upstream(t) for t in op.tensors]
            for side in (0, 1):
                sig = next((u for u in ups[side] if u.name == "sigmoid"), None)
                if sig is not None and not any(u.name == "sigmoid" for u in ups[1 - side]):
                    scale = next((u.scalars[0] for u in trace.upstream(sig.tensors[0])[:1]
                                  if u.name == "mul" and u.scalars), 1.0)
                    return "silu" if scale == 1 else f"swish(alpha={scale:g})"
    found = [n for n in names if n in ACTIVATIONS]
    return found[0] if found else None


def _squares(ops: list[Op]) -> bool:
    return any(op.name == "mul" and len(op.tensors) == 2 and op.tensors[0] == op.tensors[1] for op in ops)
