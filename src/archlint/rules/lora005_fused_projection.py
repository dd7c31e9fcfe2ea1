"""LORA005 fused-projection."""

from __future__ import annotations

from ..findings import Confidence, Severity
from ..plan.verify import Candidate, reaches_all, verified_fix
from ..peft_support import is_linear_like
from ..structure import QKVO, STANDARD_NAMES
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
        Flags Linear layers that fuse Q/K/V or gate/up into one matrix, known by their
        name (`qkv_proj`, `gate_up_proj`, `Wqkv`, `W_pack`, `c_attn`,
        `query_key_value`) or by their size: an attention's only input projection whose
        `out_features` equals `(num_heads + 2 * num_kv_heads) * head_dim`.

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
        https://github.com/vllm-project/vllm/issues/4715 (PHI-01),
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
    )

    def check(self, ctx):
        fused = []
        for group in ctx.graph.distinct(lambda i: is_linear_like(i.module)):
            parts = FUSED_NAMES.get(group.info.leaf_name) or _fused_by_size(ctx, group.info)
            if parts:
                fused.append((group, parts))
        if not fused:
            return
        native = sorted({g.info.leaf_name for g, _ in fused})
        present = {i.leaf_name for i in ctx.graph if is_linear_like(i.module)}
        names = [n for n in STANDARD_NAMES if n in present] + native
        for group, parts in fused:
            siblings = {c.leaf_name for c in ctx.graph.children(ctx.graph.parent(group.info.path).path)}
            missing = [n for n in STANDARD_NAMES if n not in siblings and _fused_into(n, parts)]
            yield self.finding(
                group.paths,
                f"`{group.info.leaf_name}` computes {parts} in one matrix: "
                f"{', '.join(missing) or 'the split names'} match nothing here and share one LoRA rank",
                module_class=group.info.class_name,
                fix=verified_fix(ctx, "Target the model's own projection names", [Candidate(
                    "target_modules=[" + ", ".join(f'"{n}"' for n in dict.fromkeys(names)) + "]",
                    {"target_modules": list(dict.fromkeys(names))}, expect=reaches_all(group.paths))]),
                details={"fuses": parts},
            )


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
