"""Record one module's forward as aten ops with the role of every operand.

A :class:`Recorder` is a ``TorchDispatchMode``: every aten op that runs inside it is
kept as an :class:`Op` whose operands say what they are -- one of the probed module's
parameters or buffers (by its dotted name under that module), one of the synthesised
inputs, the output of an earlier op, or a Python scalar. Tensors are told apart by
their TensorImpl (``_cdata``), which a parameter shares with the plain tensor the
dispatcher hands over; every output is kept alive for the whole recording so that no
identity is reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

#: Ops that only reshape, alias or copy: dataflow passes through them unchanged.
VIEW_OPS = frozenset({
    "native_dropout", "dropout", "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze",
    "squeeze",
    "alias", "detach", "clone", "contiguous", "_reshape_alias", "as_strided", "flatten", "lift_fresh",
})
#: Ops that select part of a tensor (a fused projection's halves).
SPLIT_OPS = frozenset({"slice", "split", "split_with_sizes", "chunk", "unbind", "select", "narrow", "unsafe_split"})


@dataclass(frozen=True)
class Operand:
    """One argument of a recorded op."""

    kind: str  # "param" | "buffer" | "input" | "op" | "scalar" | "tensor" | "none"
    name: str = ""  # parameter/buffer name, or input index as text
    op: int = -1  # producing op, for kind "op"
    value: Any = None  # the Python value, for kind "scalar"
    dtype: str = ""
    shape: tuple[int, ...] = ()

    @property
    def is_tensor(self) -> bool:
        return self.kind not in ("scalar", "none")


@dataclass(frozen=True)
class Op:
    index: int
    name: str  # overload packet name: "mul", "_to_copy", "clamp"
    overload: str
    args: tuple[Operand, ...]
    kwargs: tuple[tuple[str, Operand], ...]
    out_dtype: str
    out_shape: tuple[int, ...]

    def kwarg(self, key: str, default: Any = None) -> Any:
        for k, v in self.kwargs:
            if k == key:
                return v.value if v.kind == "scalar" else v
        return default

    @property
    def tensors(self) -> list[Operand]:
        return [a for a in (*self.args, *(v for _, v in self.kwargs)) if a.is_tensor]

    @property
    def scalars(self) -> list[Any]:
        return [a.value for a in self.args if a.kind == "scalar"]

    @property
    def unbounded_clamp(self) -> bool:
        """A ``clamp``/``clamp_min``/``clamp_max`` whose every bound is absent or infinite:
        it changes nothing (NaN aside), so it is no clamp."""
        if not self.name.startswith("clamp"):
            return False
        bounds = [a for a in self.args[1:3]] + [v for k, v in self.kwargs if k in ("min", "max")]
        return all(a.kind == "none" or (a.kind == "scalar" and isinstance(a.value, (int, float))
                                        and math.isinf(a.value)) for a in bounds)


@dataclass
class Trace:
    """The ops of one forward, in order, and the dtype of the inputs it was given."""

    ops: list[Op] = field(default_factory=list)
    input_dtype: str = ""
    _roots: dict[int, frozenset] = field(default_factory=dict, repr=False)  # op index -> its roots
    _consumers: dict[int, list[Op]] | None = field(default=None, repr=False)

    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def origin(self, operand: Operand, through: frozenset[str] = VIEW_OPS) -> Operand:
        """Follow ``operand`` back through view-like ops (or the ops named in ``through``)
        to where it came from."""
        while operand.kind == "op":
            op = self.ops[operand.op]
            if op.name not in through or not op.tensors:
                break
            operand = op.tensors[0]
        return operand

    def roots(self, operand: Operand) -> frozenset[tuple[str, str]]:
        """Every parameter, buffer and input that ``operand`` depends on, as (kind, name)."""
        if operand.kind in ("param", "buffer", "input"):
            return frozenset({(operand.kind, operand.name)})
        if operand.kind != "op":
            return frozenset()
        if operand.op not in self._roots:
            # ops only read earlier ops: fill the table in order, each from its operands
            for op in self.ops[len(self._roots):operand.op + 1]:
                found: set = set()
                for t in op.tensors:
                    found |= self._roots[t.op] if t.kind == "op" else self.roots(t)
                self._roots[op.index] = frozenset(found)
        return self._roots[operand.op]

    def upstream(self, operand: Operand) -> list[Op]:
        """The ops ``operand`` was computed from, nearest first (breadth-first)."""
        out, frontier, seen = [], [operand], set()
        while frontier:
            nxt = []
            for o in frontier:
                if o.kind == "op" and o.op not in seen:
                    seen.add(o.op)
                    out.append(self.ops[o.op])
                    nxt.extend(self.ops[o.op].tensors)
            frontier = nxt
        return out

    def consumers(self, index: int) -> list[Op]:
        if self._consumers is None:
            self._consumers = {}
            for op in self.ops:
                for i in dict.fromkeys(t.op for t in op.tensors if t.kind == "op"):
                    self._consumers.setdefault(i, []).append(op)
        return self._consumers.get(index, [])


class Recorder(TorchDispatchMode):
    """Records every aten op with operand roles; ``known`` maps ``_cdata`` to a role."""

    def __init__(self, known: dict[int, Operand]):
        super().__init__()
        self.known = dict(known)
        self.trace = Trace()
        self._alive: list[torch.Tensor] = []

    def _operand(self, value: Any) -> Operand:
        if isinstance(value, torch.Tensor):
            role = self.known.get(value._cdata)
            meta = {"dtype": str(value.dtype).removeprefix("torch."), "shape": tuple(value.shape)}
            if role is None:
                return Operand("tensor", **meta)
            return Operand(role.kind, role.name, role.op, **meta)
        if value is None:
            return Operand("none")
        if isinstance(value, (bool, int, float, complex, str,
                              torch.dtype, torch.device, torch.layout, torch.memory_format)):
            return Operand("scalar", value=value)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, bool)) for v in value):
            return Operand("scalar", value=tuple(value))
        return Operand("scalar", value=repr(value))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        index = len(self.trace.ops)
        flat_args = []
        for a in args:  # a list of tensors (cat, stack) counts as several operands
            flat_args.extend(a if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor) else [a])
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        first = outs[0] if outs else None
        self.trace.ops.append(Op(
            index=index,
            name=func.overloadpacket.__name__,
            overload=func._overloadname,
            args=tuple(self._operand(a) for a in flat_args),
            kwargs=tuple((k, self._operand(v)) for k, v in kwargs.items()),
            out_dtype=str(first.dtype).removeprefix("torch.") if first is not None else "",
            out_shape=tuple(first.shape) if first is not None else (),
        ))
        for position, t in enumerate(outs):
            if t._cdata not in self.known or self.known[t._cdata].kind == "op":
                self.known[t._cdata] = Operand("op", name=str(position) if len(outs) > 1 else "", op=index)
            self._alive.append(t)
        return out
