"""What a module computes besides its affine maps or lookups, read from a probe trace.

Used on Linear wrappers (their clamps, soft-caps, scales around the inner Linear) and on
``nn.Linear``/``nn.Embedding`` subclasses (is the forward still the plain affine map or
lookup?). Reshapes, transposes, dtype casts and the projection/lookup ops themselves are
the plain part; every other op is an extra, described with its operands.
"""

from __future__ import annotations

from .gates import PROJECTIONS
from .trace import VIEW_OPS, Op, Trace

_PLAIN = VIEW_OPS | PROJECTIONS | {"embedding", "_to_copy", "empty", "zeros", "lift_fresh_copy", "copy_"}
_BIAS_ADD = {"add", "add_"}


def extra_ops(trace: Trace) -> list[str]:
    """One phrase per op beyond the affine map / lookup, in order ("clamp input to
    [`input_min`, `input_max`]", "tanh", "mul by 0.5")."""
    projection = next((op.index for op in trace.ops if op.name in PROJECTIONS or op.name == "embedding"), None)
    out = [] if projection is not None else ["no affine map or lookup of the input by its weight"]
    for op in trace.ops:
        if op.name in _PLAIN or _bias_add(op) or op.unbounded_clamp:
            continue
        where = "" if projection is None else (" on the input" if op.index < projection else " on the output")
        out.append(_describe(op) + where)
    return list(dict.fromkeys(out))


def _bias_add(op: Op) -> bool:
    return op.name in _BIAS_ADD and any(t.kind == "param" and t.name.endswith("bias") for t in op.tensors)


def _describe(op: Op) -> str:
    def operand(a):
        if a.kind in ("param", "buffer"):
            return f"`{a.name}`"
        if a.kind == "scalar":
            return f"{a.value:g}" if isinstance(a.value, float) else str(a.value)
        return "-" if a.kind == "none" else "…"

    if op.name.startswith("clamp"):
        bounds = [operand(a) for a in op.args[1:3]] + ["-"] * 2
        bounds = [b if b != "-" else unbounded for b, unbounded in zip(bounds, ("-inf", "inf"), strict=False)]
        return f"clamp to [{', '.join(bounds)}]"
    others = [operand(a) for a in op.args[1:] if a.kind in ("param", "buffer", "scalar")]
    of = f" of {operand(op.args[0])}" if op.args and op.args[0].kind in ("param", "buffer") else ""
    return op.name.rstrip("_") + of + (f" by {', '.join(others)}" if others else "")


def summarise(extras: list[str], limit: int = 4) -> str:
    """The first ``limit`` extras, then how many more."""
    shown = "; ".join(extras[:limit])
    return shown + (f"; … {len(extras) - limit} more ops" if len(extras) > limit else "")
