"""LORA005 fused-projection."""

from __future__ import annotations

from ..findings import Confidence, Severity
from ..lora.layers import is_linear_like
from ..lora.recipes import QKVO, STANDARD_NAMES
from ..lora.verify import Candidate, reaches_all, verified_fix
from ..probe.roles import Role
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
        Flags Linear layers whose output is cut into parts that split-projection recipes
        name separately: Q, K and V (`q_proj`, `k_proj`, `v_proj`) or GLU gate and up
        (`gate_proj`, `up_proj`). The enclosing block's forward is recorded on meta
        tensors once and each part's role is read from what the data does (its position
        in the attention core, the activated side of the GLU product), so a fused
        projection is found under any name, and a projection cut into a query and an
        output gate (GATE002) or into a Mamba mixer's gate, scan input and step size is
        not mistaken for Q/K/V. Where the block cannot be traced, a projection whose name
        (`qkv_proj`, `gate_up_proj`, `Wqkv`, `W_pack`, `c_attn`, `query_key_value`) or
        size says fused is reported as info, at low confidence.

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
    reads_ahead = frozenset({"plans"})
    confidence = Confidence.MEDIUM  # a name or a size; probes (#3) confirm the split
    severity_note = "info, at low confidence, when the block cannot be traced and only its name or size says fused"
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
        roles = ctx.roles
        for group in ctx.graph.distinct(lambda i: is_linear_like(i.module)):
            claimed = FUSED_NAMES.get(group.representative.leaf_name) or _fused_by_size(ctx, group.representative)
            if not claimed and not _outgrows_siblings(ctx, group.representative):
                continue  # its whole output fits the next projection: nothing to cut, no trace needed
            answer = roles.of(group.representative.path)
            if not answer.read:
                if claimed:  # the name or size says fused; nothing could confirm it
                    fused.append((group, claimed, Confidence.LOW, None, answer))
                continue
            parts = [p for p in answer.parts if p.role in _STANDARD]
            if (len(answer.parts) < 2
                    or len({p.role for p in parts}) < 2 and Role.KEY_VALUE not in {p.role for p in parts}):
                continue  # used whole, or cut into parts of which at most one is a split-recipe projection
            fused.append((group, _words(answer), Confidence.HIGH, len(answer.parts), answer))
        if not fused:
            return
        native = sorted({g.representative.leaf_name for g, *_ in fused})
        present = {i.leaf_name for i in ctx.graph if is_linear_like(i.module)}
        names = [n for n in STANDARD_NAMES if n in present] + native
        for group, parts, confidence, cut, answer in fused:
            if not (ctx.plans.touches(group.paths) or ctx.plans.dead_entry):
                continue  # with a plan: what it reaches, or every fused name when an entry matches nothing
            siblings = {c.leaf_name for c in ctx.graph.children(ctx.graph.parent(group.representative.path).path)}
            wanted = _standard_names(answer) if answer.read else [n for n in STANDARD_NAMES if _fused_into(n, parts)]
            missing = [n for n in wanted if n not in siblings]
            if answer.read and not missing:
                continue  # every split name it stands for exists beside it (q_proj + an output gate: GATE002)
            unread = ("" if answer.read
                      else f" (claimed by its name or size; its parts could not be read: {answer.unread})")
            yield self.finding(
                group.paths,
                f"`{group.representative.leaf_name}` computes {parts} in one matrix: "
                f"{', '.join(missing) or 'the split names'} match nothing here and share one LoRA rank{unread}",
                module_class=group.representative.class_name,
                severity=None if answer.read else Severity.INFO,
                fix=verified_fix(ctx.plans.outcome_of, "Target the model's own projection names", [Candidate(
                    "target_modules=[" + ", ".join(f'"{n}"' for n in dict.fromkeys(names)) + "]",
                    {"target_modules": list(dict.fromkeys(names))}, expect=reaches_all(group.paths))]),
                details={"fuses": parts, "split_after": cut, "roles": answer.to_dict()},
                confidence=confidence,
            )


#: Roles a split-projection recipe names a Linear after, and those names.
_STANDARD = {Role.QUERY: ("q_proj",), Role.KEY: ("k_proj",), Role.VALUE: ("v_proj",),
             Role.KEY_VALUE: ("k_proj", "v_proj"), Role.GLU_GATE: ("gate_proj",), Role.GLU_UP: ("up_proj",)}
_LETTERS = {Role.QUERY: "q", Role.KEY: "k", Role.VALUE: "v", Role.KEY_VALUE: "k and v (one tensor)",
            Role.GLU_GATE: "gate", Role.GLU_UP: "up", Role.OUTPUT_GATE: "an output gate",
            Role.SSM_INPUT: "a scan input", Role.ROUTER: "router scores", Role.INDEXER: "indexer scores",
            Role.LATENT: "a latent", Role.OUTPUT: "an output"}


def _words(answer) -> str:
    words = list(dict.fromkeys(_LETTERS.get(p.role, p.role.value) for p in answer.parts))
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _standard_names(answer) -> list[str]:
    return list(dict.fromkeys(n for p in answer.parts for n in _STANDARD.get(p.role, ())))


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
