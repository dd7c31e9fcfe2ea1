"""LORA005 fused-projection."""

from __future__ import annotations

from ..findings import Confidence, Severity
from ..lora.layers import is_linear_like
from ..lora.recipes import QKVO, STANDARD_NAMES
from ..lora.verify import Candidate, reaches_all, verified_fix
from ..probe.projections import output_parts
from .base import Example, Rule

#: Leaf names of projections that compute several logical projections in one matrix.
FUSED_NAMES = {
    "qkv_proj": "q, k and v", "qkv": "q, k and v", "wqkv": "q, k and v", "Wqkv": "q, k and v",
    "W_pack": "q, k and v", "c_attn": "q, k and v", "query_key_value": "q, k and v",
    "in_proj_qkv": "q, k and v", "qkv_linear": "q, k and v", "kv_proj": "k and v",
    "gate_up_proj": "gate and up", "w13": "gate and up", "fc1_gate_up": "gate and up",
}


class FusedProjection(Rule):
    """One Linear computes several logical projections (`qkv_proj`, `gate_up_proj`).

    What it does:
        Flags Linear layers that fuse Q/K/V or gate/up into one matrix. The parent's
        forward (the attention or MLP) is recorded on meta tensors and the
        split/chunk/slices that follow the projection are counted: that confirms a
        projection known by its name (`qkv_proj`, `gate_up_proj`, `Wqkv`, `W_pack`,
        `c_attn`, `query_key_value`) or size (an attention's only input projection with
        `out_features == (num_heads + 2 * num_kv_heads) * head_dim`), and finds fused
        ones under any name: an attention projection cut in three, or the projection a
        GLU takes both gate and up from.

    Why is this bad:
        Recipes written for split projections (`q_proj`, `k_proj`, `v_proj`, `gate_proj`,
        `up_proj`) match nothing here, so those parts train nothing; Q, K and V share one
        LoRA rank; serving stacks that expect split adapters must split `lora_B` first.

    Example:
        Phi-3's `self_attn.qkv_proj` and `mlp.gate_up_proj`.

    Use instead:
        The model's own names, as printed in the fix, and the split/merge step when
        serving the adapter with a stack that expects the split layout.

    References:
        https://github.com/vllm-project/vllm/issues/4715,
        https://github.com/meta-pytorch/torchtune/pull/222
    """

    code = "LORA005"
    name = "fused-projection"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM  # a name or a size; probes (#3) confirm the split
    tools = ("peft", "vllm", "sglang")

    VALID = (Example("fixtures/zoo/towers.py:SingleTower"),)
    INVALID = (
        Example("fixtures/zoo/fused.py:FusedQKV", paths=("layers.0.attn.qkv_proj", "layers.1.attn.qkv_proj"),
                fix='"qkv_proj"'),
        Example("fixtures/zoo/fused.py:PackedProjections",
                paths=("layers.0.attn.in_proj", "layers.1.attn.in_proj", "layers.0.mlp.w_in", "layers.1.mlp.w_in"),
                fix='"in_proj"', note="neutral names, found by the chunk after them"),
    )

    def check(self, ctx):
        fused = []
        for group in ctx.graph.distinct(lambda i: is_linear_like(i.module)):
            claimed = FUSED_NAMES.get(group.representative.leaf_name) or _fused_by_size(ctx, group.representative)
            if not claimed and not _outgrows_siblings(ctx, group.representative):
                continue  # its whole output fits the next projection: nothing to cut, no probe needed
            cut, behaviour = _split_after(ctx, group.representative)
            if claimed and cut is not None and cut < 2:
                fused.append((group, claimed, Confidence.LOW, cut))  # the name says fused; the forward uses it whole
            elif claimed:
                fused.append((group, claimed, Confidence.MEDIUM if cut is None else Confidence.HIGH, cut))
            elif behaviour:
                fused.append((group, behaviour, Confidence.MEDIUM, cut))
        if not fused:
            return
        native = sorted({g.representative.leaf_name for g, *_ in fused})
        present = {i.leaf_name for i in ctx.graph if is_linear_like(i.module)}
        names = [n for n in STANDARD_NAMES if n in present] + native
        for group, parts, confidence, cut in fused:
            if not (ctx.plans.touches(group.paths) or ctx.plans.dead_entry):
                continue  # with a plan: what it reaches, or every fused name when an entry matches nothing
            siblings = {c.leaf_name for c in ctx.graph.children(ctx.graph.parent(group.representative.path).path)}
            missing = [n for n in STANDARD_NAMES if n not in siblings and _fused_into(n, parts)]
            yield self.finding(
                group.paths,
                f"`{group.representative.leaf_name}` computes {parts} in one matrix: "
                f"{', '.join(missing) or 'the split names'} match nothing here and share one LoRA rank",
                module_class=group.representative.class_name,
                fix=verified_fix(ctx.plans.outcome_of, "Target the model's own projection names", [Candidate(
                    "target_modules=[" + ", ".join(f'"{n}"' for n in dict.fromkeys(names)) + "]",
                    {"target_modules": list(dict.fromkeys(names))}, expect=reaches_all(group.paths))]),
                details={"fuses": parts, "split_after": cut},
                confidence=confidence,
            )


def _outgrows_siblings(ctx, info) -> bool:
    """Wider than every sibling projection's input: only parts of its output can feed
    them (``qkv_proj`` vs ``o_proj``, ``gate_up_proj`` vs ``down_proj``)."""
    parent = ctx.graph.parent(info.path)
    out = getattr(info.module, "out_features", None)
    if parent is None or not isinstance(out, int):
        return False
    widths = [getattr(c.module, "in_features", None) for c in ctx.graph.children(parent.path) if c is not info]
    widths = [w for w in widths if isinstance(w, int)]
    return bool(widths) and out > max(widths)


def _split_after(ctx, info) -> tuple[int | None, str | None]:
    """How many parts the parent's forward cuts this projection's output into, and what
    the cut says by itself ("q, k and v" for three parts in an attention, "gate and up"
    when a GLU takes both from it)."""
    parent = ctx.graph.parent(info.path)
    if parent is None:
        return None, None
    weight = f"{info.leaf_name}.weight"
    cut = ctx.probes.read(parent.module, lambda trace: output_parts(trace, weight))
    if cut is None or cut < 2:
        return cut, None
    glu = ctx.probes.glu(parent.module)
    if glu is not None and glu.fused and glu.gate.weight == weight:
        return cut, "gate and up"
    if cut == 3 and isinstance(getattr(parent.module, "head_dim", None), int):
        return cut, "q, k and v"
    return cut, None


def _fused_into(name: str, parts: str) -> bool:
    letter = name.split("_")[0]
    return letter in parts.replace(",", " ").split()


def _fused_by_size(ctx, info) -> str | None:
    parent = ctx.graph.parent(info.path)
    if parent is None or any(n in parent.children for n in QKVO[:3]):
        return None
    attn = parent.module
    head_dim = getattr(attn, "head_dim", None)
    heads = getattr(attn, "num_heads", None) or getattr(attn, "num_attention_heads", None)
    kv = getattr(attn, "num_key_value_heads", None) or getattr(attn, "num_kv_heads", None) or heads
    out = getattr(info.module, "out_features", None) or getattr(info.module, "nf", None)
    if not all(isinstance(v, int) for v in (head_dim, heads, kv, out)):
        return None
    return "q, k and v" if out == (heads + 2 * kv) * head_dim and out != heads * head_dim else None
