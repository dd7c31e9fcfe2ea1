"""MoE routers, read from a probe trace.

A router is a projection followed by ``topk``. Beyond the plain Linear + softmax/top-k
(+ renormalising the top-k weights), anything it does -- normalising its input,
scaling by parameters or constants, sigmoid scores, bias-corrected scores from a buffer,
several ``topk`` (group-limited routing), random jitter, masking -- is listed as an extra.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gates import Projection, projection_ops
from .trace import Trace


@dataclass(frozen=True)
class Router:
    projection: Projection
    extras: tuple[str, ...]


def read_router(trace: Trace) -> Router | None:
    """A projection followed by ``topk`` (or a max/argmax selection), with whatever it
    does beyond Linear + softmax/top-k."""
    topks = [op for op in trace.ops if op.name == "topk"]
    maxes = [op for op in trace.ops if op.name == "argmax" or (op.name == "max" and op.overload == "dim")]
    projections = projection_ops(trace)
    if not (topks or maxes) or not projections:
        return None
    first = min(projections)
    projection = projections[first]
    extras: list[str] = []
    before = trace.ops[:first]
    if any(op.name in ("rsqrt", "mean") or (op.name == "pow" and op.scalars[:1] == [-0.5]) for op in before):
        extras.append("normalises its input")
    used = {o.name for op in trace.ops for o in op.tensors if o.kind in ("param", "buffer")}
    own = {projection.weight, projection.weight.rsplit(".", 1)[0] + ".bias" if "." in projection.weight else "bias"}
    for name in sorted(used - own):
        kind = next(o.kind for op in trace.ops for o in op.tensors if o.kind in ("param", "buffer") and o.name == name)
        extras.append(f"uses {kind} `{name}`")
    if any(op.name == "sigmoid" for op in trace.ops[first:]):
        extras.append("sigmoid scores")
    if len(topks) > 1:
        extras.append(f"{len(topks)} top-k selections (group-limited routing)")
    if maxes:
        extras.append("selects experts by max/argmax rather than top-k")
    constants = sorted({op.scalars[0] for op in trace.ops if op.name == "mul" and op.scalars
                        and isinstance(op.scalars[0], float) and op.scalars[0] != 1.0 and len(op.tensors) == 1})
    if constants:
        extras.append("scales by " + ", ".join(f"{c:g}" for c in constants))
    random_ops = ("uniform_", "rand", "randn", "normal_", "bernoulli_", "rand_like", "randn_like")
    if any(op.name in random_ops for op in trace.ops):
        extras.append("random jitter")
    if any(op.name in ("scatter", "scatter_", "masked_fill", "masked_fill_") for op in trace.ops):
        extras.append("masks experts")
    return Router(projection, tuple(extras))
