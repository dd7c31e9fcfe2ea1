"""What a normalising module computes, read from its probe trace.

From the recorded ops of one forward on a bf16 meta input:

* ``kind``: ``"rms"`` (divides by the root mean square of the input), ``"layer"``
  (subtracts the mean first, or calls ``native_layer_norm``), or None;
* ``compute_dtype``: the dtype the mean of squares is taken in;
* ``eps`` and ``eps_inside_sqrt``: the scalar added to the mean before the (reciprocal)
  square root, or after it;
* ``has_weight`` and ``offset``: whether a parameter scales the normalised input, and the
  constant added to it first (``1 + w``);
* ``cast_before_scale``: the normalised value is cast back to the input dtype before it is
  multiplied by the weight (Llama), rather than after (Gemma).

* ``gate``: the activation of a second input multiplied in (a gated norm,
  ``norm(x) · silu(z)``), and ``gate_before_norm``: whether the product is taken before
  the statistics (Mamba-2) or after the scale;
* ``group_size``: the width the statistics are taken over, when it is not the whole row.

The Liger ``casting_mode`` that reproduces it follows from the last three: ``"llama"``
(fp32 statistics, cast back, then scale), ``"gemma"`` (everything, weight included, in
fp32, cast at the end), ``"none"`` (no upcast at all).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .trace import Op, Operand, Trace

_RSQRT = {"rsqrt"}
_SQRT = {"sqrt"}


@dataclass(frozen=True)
class NormSemantics:
    kind: str  # "rms" | "layer"
    compute_dtype: str
    input_dtype: str
    eps: float | None
    eps_inside_sqrt: bool | None
    has_weight: bool
    offset: float
    cast_before_scale: bool | None  # None when there is no weight or no upcast
    weight: str | None  # the scaling parameter's name
    gate: str | None = None  # activation of the gating input, for a gated norm
    gate_before_norm: bool | None = None
    group_size: int | None = None  # statistics per group of this many channels

    @property
    def casting_mode(self) -> str:
        if self.compute_dtype == self.input_dtype:
            return "none"
        return "llama" if self.cast_before_scale in (True, None) else "gemma"

    @property
    def llama_convention(self) -> bool:
        """What kernel patchers assume by default: scale by ``w`` after casting back. A
        weightless norm that casts back follows it too (its missing weight is NORM002's)."""
        return (self.kind == "rms" and self.offset == 0 and self.eps_inside_sqrt is True
                and self.casting_mode == "llama" and self.gate is None and self.group_size is None)

    @property
    def plain(self) -> bool:
        """Neither gated nor grouped: what a plain RMSNorm kernel can compute at all."""
        return self.gate is None and self.group_size is None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["offset"] = int(self.offset) if float(self.offset).is_integer() else self.offset
        out.pop("weight")
        out.pop("kind")
        for key in ("gate", "gate_before_norm", "group_size"):
            if out[key] is None:
                out.pop(key)
        return out


def read_norm(trace: Trace) -> NormSemantics | None:
    """The semantics of a norm's forward, or None when the trace normalises nothing."""
    ops = trace.ops
    if any(op.name in ("native_layer_norm", "layer_norm") for op in ops):
        return _fused_layer_norm(trace)
    square = next((op for op in ops if _squares_input(trace, op)), None)
    if square is None:
        return None
    mean = next((op for op in trace.consumers(square.index) if op.name == "mean"), None)
    if mean is None:
        return None
    centred = any(op.name == "sub" and any(_from_plain_mean(trace, t) for t in op.tensors) for op in ops)
    eps, inside = _eps(trace, mean)
    scale_mul, weight, offset = _scale(trace)
    cast_before = None
    if scale_mul is not None and mean.out_dtype != trace.input_dtype:
        normed = next(t for t in scale_mul.tensors if ("input", "0") in trace.roots(t))
        cast_before = normed.dtype == trace.input_dtype
    gate, gate_before = _gate(trace, square)
    width = square.args[0].shape[-1] if square.args and square.args[0].shape else None
    inputs = [a for op in trace.ops for a in op.tensors if a.kind == "input" and a.name == "0" and a.shape]
    full = inputs[0].shape[-1] if inputs else None
    return NormSemantics(
        kind="layer" if centred else "rms",
        compute_dtype=mean.out_dtype,
        input_dtype=trace.input_dtype,
        eps=eps,
        eps_inside_sqrt=inside,
        has_weight=weight is not None,
        offset=offset,
        cast_before_scale=cast_before,
        weight=weight,
        gate=gate,
        gate_before_norm=gate_before,
        group_size=width if width and full and width != full else None,
    )


_GATE_ACTS = {"silu": "silu", "sigmoid": "sigmoid", "gelu": "gelu", "relu": "relu", "tanh": "tanh"}


def _gate(trace: Trace, square: Op) -> tuple[str | None, bool | None]:
    """The activation of a second input multiplied into the normalised stream, and whether
    that happens before the statistics (the squared value already carries it)."""
    for op in trace.ops:
        if op.name not in _GATE_ACTS or not op.tensors:
            continue
        roots = trace.roots(op.tensors[0]) | (
            {(op.tensors[0].kind, op.tensors[0].name)} if op.tensors[0].kind == "input" else set())
        if not roots or not all(k == "input" and n != "0" for k, n in roots):
            continue
        before = any(u.index == op.index for u in trace.upstream(square.tensors[0]))
        return _GATE_ACTS[op.name], before
    return None, None


def _squares_input(trace: Trace, op: Op) -> bool:
    """``pow(x, 2)`` or ``x * x`` of a value that came from the input."""
    tensors = op.tensors
    if not tensors or ("input", "0") not in trace.roots(tensors[0]):
        return False
    if op.name == "pow" and op.scalars[:1] == [2]:
        return True
    return op.name == "mul" and len(tensors) == 2 and trace.origin(tensors[0]) == trace.origin(tensors[1])


def _from_plain_mean(trace: Trace, operand: Operand) -> bool:
    """``operand`` is a mean of the input itself (not of its square): LayerNorm centring."""
    origin = trace.origin(operand)
    if origin.kind != "op":
        return False
    op = trace.ops[origin.op]
    return op.name == "mean" and not any(_squares_input(trace, trace.ops[t.op]) for t in op.tensors if t.kind == "op")


def _eps(trace: Trace, mean: Op) -> tuple[float | None, bool | None]:
    """The epsilon and whether it is added before the square root."""
    current, seen_sqrt = mean, False
    for _ in range(4):
        nxt = trace.consumers(current.index)
        if not nxt:
            break
        op = nxt[0]
        if op.name in ("add", "add_") and op.scalars:
            return float(op.scalars[0]), not seen_sqrt
        if op.name in _RSQRT or op.name in _SQRT or (op.name == "pow" and op.scalars and op.scalars[0] in (0.5, -0.5)):
            seen_sqrt = True
        current = op
    return None, None


def _scale(trace: Trace) -> tuple[Op | None, str | None, float]:
    """The ``mul`` applying a 1-D parameter to the normalised input, that parameter, and
    any constant added to the parameter first."""
    for op in trace.ops:
        if op.name != "mul" or len(op.tensors) != 2:
            continue
        sides = [trace.roots(t) for t in op.tensors]
        params = [[n for k, n in s if k == "param"] for s in sides]
        for i in (0, 1):
            other = sides[1 - i]
            if params[i] and not any(k == "input" for k, _ in sides[i]) and ("input", "0") in other:
                return op, params[i][0], _offset(trace, op.tensors[i])
    return None, None, 0.0


def _offset(trace: Trace, operand: Operand) -> float:
    for op in trace.upstream(operand):
        if op.name in ("add", "add_") and op.scalars and op.tensors:
            return float(op.scalars[0]) * float(op.kwarg("alpha", 1))
    return 0.0


def _fused_layer_norm(trace: Trace) -> NormSemantics:
    op = next(o for o in trace.ops if o.name in ("native_layer_norm", "layer_norm"))
    eps = next((float(a.value) for a in reversed(op.args) if a.kind == "scalar" and isinstance(a.value, float)), None)
    weight = next((a.name for a in op.args if a.kind == "param"), None)
    return NormSemantics("layer", op.out_dtype, trace.input_dtype, eps, True, weight is not None, 0.0, None, weight)


def liger_settings(s: NormSemantics) -> dict | None:
    """The ``LigerRMSNorm`` settings reproducing ``s``; None when no Liger mode does."""
    if s.eps_inside_sqrt is False:
        return None
    out = {"eps": s.eps, "offset": float(s.offset), "casting_mode": s.casting_mode}
    if not s.has_weight:
        out["elementwise_affine"] = False
    return out


def liger_arguments(s: NormSemantics) -> str:
    """``LigerRMSNorm`` keyword arguments reproducing ``s`` (offset, casting_mode)."""
    parts = [f"eps={s.eps}", f"offset={float(s.offset)}", f"casting_mode='{s.casting_mode}'"]
    if not s.has_weight:
        parts.append("elementwise_affine=False")
    if s.eps_inside_sqrt is False:
        parts.append("# no Liger mode adds eps outside the square root: leave unpatched")
    return ", ".join(parts)
