"""GATE001 gated-mlp-variant."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..lora.layers import is_linear_like
from ..probe.roles import Role, module_of
from .base import Example, Rule

#: An MLP is small: the module, its projections, their wrappers and an activation module.
_MAX_DESCENDANTS = 10


class GatedMlpVariant(Rule):
    """A gated (GLU) MLP, with its exact variant read from its forward.

    What it does:
        Records the forward of every MLP-sized module (and of stacked experts) on
        meta tensors and finds the `act(gate(x)) * up(x)` product, confirmed by the
        roles the data flow gives its two sides (projections of the same input, the
        activated one scored into no selection: a router's sigmoid times the experts'
        output is routing, not a GLU): which projections
        feed it (split `gate_proj`/`up_proj`, or one fused projection cut in halves or
        interleaved), the activation (SiLU, tanh-approximate or exact GELU,
        `x·σ(αx)`, ReLU²...), and any clamps or constants. Canonical SwiGLU with split
        projections is info, and so are stacked experts in the layout transformers
        stores every fused MoE in (SiLU on the first half of one `gate_up_proj`);
        every other variant is a warning that names it. A clamp with an absent or
        infinite bound is printed as the bound it has ("at most 10").

    Why is this bad:
        Fused-MLP kernel swaps assume one variant: Liger's SwiGLU kernel on a GeGLU MLP,
        or on gpt-oss's clamped `x·σ(1.702x)·(up + 1)`, computes a different function
        silently. Converters and serving stacks that split a fused `gate_up_proj` in
        halves scramble an interleaved one. LoRA recipes naming `gate_proj`/`up_proj`
        reach nothing in a fused MLP.

    Example:
        Gemma's MLP is `down(gelu_tanh(gate(x)) * up(x))`; gpt-oss's experts clamp
        the gate to 7 and the up projection to [-7, 7] and add 1 to it.

    Use instead:
        The kernel that matches the variant (LigerSwiGLUMLP, LigerGEGLUMLP for tanh
        GELU, LigerPhi3SwiGLUMLP for a fused halves projection), or leave the MLP
        unpatched when no kernel computes it.

    References:
        https://github.com/linkedin/Liger-Kernel (swiglu/geglu kernels);
        https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt_oss/modeling_gpt_oss.py
    """

    code = "GATE001"
    name = "gated-mlp-variant"
    severity = Severity.WARNING
    severity_note = ("info for a canonical split SwiGLU, and for stacked experts in transformers' own fused "
                     "SwiGLU layout")
    confidence = Confidence.MEDIUM
    tools = ("liger", "unsloth", "vllm", "gguf", "peft")

    VALID = (Example("fixtures/zoo/gates.py:PlainMLPModel", note="no gate: down(gelu(up(x)))"),)
    INVALID = (
        Example("fixtures/zoo/gates.py:SwiGLUModel", paths=("layers.0.mlp", "layers.1.mlp"),
                fix="LigerSwiGLUMLP", note="canonical: info"),
        Example("fixtures/zoo/gates.py:TanhGeGLUModel", paths=("layers.0.mlp", "layers.1.mlp"), fix="LigerGEGLUMLP"),
        Example("fixtures/zoo/gates.py:ClampedFusedSwiGLUModel", paths=("layers.0.mlp", "layers.1.mlp"),
                fix="leave unpatched"),
    )

    def check(self, ctx):
        for group in ctx.graph.distinct(lambda i: _mlp_sized(ctx, i)):
            glu = ctx.probes.glu(group.representative.module)
            if (glu is None or not _gate_role(ctx, group.representative.path, glu)
                    or _inner_glu(ctx, group.representative.module, glu)):
                continue
            info = group.representative
            stacked = _stacked(info.module, glu)
            standard = stacked and _standard_experts(glu)
            yield self.finding(
                group.paths,
                f"{info.class_name} is a {glu.variant} MLP: {_formula(glu)}"
                + ("; the layout transformers stores every fused MoE in" if standard else ""),
                module_class=info.class_name,
                severity=Severity.INFO if glu.canonical or standard else Severity.WARNING,
                fix=_fix(glu, stacked=stacked),
                details={"variant": glu.variant, "activation": glu.activation, "fused": glu.fused,
                         "layout": glu.layout, "gate": glu.gate.weight, "up": glu.up.weight,
                         "clamps": [list(c) for c in glu.clamps], "up_offset": glu.up_offset,
                         "canonical": glu.canonical},
            )


def _gate_role(ctx, path: str, glu) -> bool:
    """The data flow agrees: the activated side is a GLU gate (both sides projections of
    the same input, the gate scored into no selection) -- not a router's weights times
    the experts' output."""
    reading = ctx.roles.block_roles(path)
    if reading is None:
        return False
    gate = [p.role for p in reading.of(module_of(glu.gate.weight))]
    up = [p.role for p in reading.of(module_of(glu.up.weight))]
    return Role.GLU_GATE in gate and Role.GLU_UP in up


def _inner_glu(ctx, module, glu) -> bool:
    """The GLU belongs to a submodule reported on its own (a MoE block around its
    experts or its shared expert)."""
    parts = glu.gate.weight.split(".")[:-1]
    for depth in range(1, len(parts) + 1):
        path = ".".join(parts[:depth])
        sub = module.get_submodule(path)
        stacked = any(p.ndim >= 3 for p in sub.parameters(recurse=False))
        if not is_linear_like(sub) and (stacked or any(True for _ in sub.children())) and ctx.probes.glu(sub):
            return True
    return False


def _mlp_sized(ctx, info) -> bool:
    """A small module around projections (or owning stacked expert weights), not an attention."""
    module = info.module
    if is_linear_like(module) or isinstance(getattr(module, "head_dim", None), int):
        return False
    if any(t.ndim >= 3 for t in info.parameters.values()):
        return True
    if info.is_leaf or info.parameters:
        return False
    descendants = list(module.modules())
    # a GLU needs two projections: gate (or fused gate/up) and down
    return len(descendants) <= _MAX_DESCENDANTS and sum(is_linear_like(m) for m in descendants) >= 2


def _formula(glu) -> str:
    gate = glu.gate.weight.removesuffix(".weight")
    up = glu.up.weight.removesuffix(".weight")
    if glu.fused:
        return f"gate and up are cut from one `{gate}`"
    return f"{glu.activation}(`{gate}`(x)) * `{up}`(x)"


def _standard_experts(glu) -> bool:
    """Stacked experts as transformers' own experts implementations compute them: SiLU on
    the first half of one fused ``gate_up_proj``, nothing else. Tools written for
    transformers' MoE layout expect exactly this; only a departure from it is a warning."""
    return (glu.activation == "silu" and glu.fused and glu.layout == "halves"
            and not glu.clamps and not glu.up_offset)


def _stacked(module, glu) -> bool:
    weight = dict(module.named_parameters()).get(glu.gate.weight)
    return weight is not None and weight.ndim >= 3


def _fix(glu, *, stacked: bool = False) -> Fix:
    if glu.canonical:
        return Fix("Standard SwiGLU kernels match", "LigerSwiGLUMLP (silu, split gate_proj/up_proj)")
    if glu.clamps or glu.up_offset or glu.activation.startswith("swish"):
        return Fix("No drop-in fused-MLP kernel computes this variant: leave unpatched",
                   "a SwiGLU kernel would drop " + ", ".join(
                       (["the clamps"] if glu.clamps else [])
                       + ([f"the +{glu.up_offset:g} on up"] if glu.up_offset else [])
                       + ([f"alpha {glu.activation.split('=')[1].rstrip(')')}"]
                          if glu.activation.startswith("swish") else [])))
    if stacked:
        return Fix("A fused-MoE kernel or converter must cut the stacked projection exactly like this",
                   f"{glu.activation} on the gate; gate/up are the {glu.layout} of `{glu.gate.weight}` "
                   f"({'[gate; up] along the last dim' if glu.layout == 'halves' else 'gate0, up0, gate1, up1, ...'})")
    if glu.activation == "silu" and glu.layout == "halves":
        return Fix("Use the fused-projection SwiGLU kernel",
                   "LigerPhi3SwiGLUMLP ([gate; up] halves of one gate_up_proj)")
    if glu.activation == "gelu_tanh" and not glu.fused:
        return Fix("Use the GeGLU kernel, not SwiGLU", "LigerGEGLUMLP (tanh-approximate GELU)")
    if glu.activation == "gelu":
        return Fix("No exact kernel: Liger's GeGLU uses the tanh approximation; leave unpatched",
                   "keep the MLP unpatched (exact erf GELU)")
    return Fix("No drop-in fused-MLP kernel matches this layout and activation: leave unpatched",
               f"keep the MLP unpatched ({glu.variant})")
