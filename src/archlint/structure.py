"""Structural facts several rules share, computed once per lint through ``ctx.memo``.

Everything here reads types, parameter layouts and the config -- never names alone,
except where a name is the only evidence (and the caller then says so in its
confidence).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from .graph import Group, ModuleInfo, TensorInfo
from .peft_support import is_linear_like, is_lora_layer
from .source import forward_computes_rms
from .rules.base import LintContext

#: The seven projection names most LoRA recipes list (RULES.md "common recipes").
QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
STANDARD_NAMES = (*QKVO, "gate_proj", "up_proj", "down_proj")

#: Config keys that hold the number of routed experts, across model families.
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")


def recipes(ctx: LintContext) -> dict[str, tuple[str, ...]]:
    """The bare-name recipes evaluated when the user gives no plan."""
    out = {"q,k,v,o": QKVO, "seven standard names": STANDARD_NAMES}
    default = peft_default_targets(ctx.built.model_type)
    if default:
        out["PEFT default"] = default
    return out


def peft_default_targets(model_type: str | None) -> tuple[str, ...] | str | None:
    """PEFT's own default ``target_modules`` for this model type, when PEFT is installed:
    a tuple of names, or a regex string (PEFT full-matches it; Gemma-4's default is one)."""
    if not model_type:
        return None
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    except ImportError:
        return None
    names = table.get(model_type)
    if isinstance(names, str):
        return names
    return tuple(names) if names else None


def name_matches(path: str, names: Iterable[str] | str) -> bool:
    """PEFT's rule for a list of ``target_modules``: the key itself or its dotted suffix;
    a string is a regex PEFT full-matches."""
    if isinstance(names, str):
        return re.fullmatch(names, path) is not None
    return any(path == n or path.endswith("." + n) for n in names)


def broken_recipes(ctx: LintContext, paths: Iterable[str]) -> list[str]:
    """The common recipes whose names reach any of ``paths``."""
    paths = list(paths)
    return [label for label, names in recipes(ctx).items() if any(name_matches(p, names) for p in paths)]


# -- linear wrappers -------------------------------------------------------------


def linear_wrappers(ctx: LintContext) -> list[Group]:
    """Groups of modules that are not a PEFT layer type but hold exactly one ``nn.Linear``
    as their only submodule and own no parameters themselves (``Gemma4ClippableLinear``)."""
    return ctx.memo("linear_wrappers", lambda: list(ctx.graph.distinct(lambda i: _is_wrapper(ctx, i))))


def _is_wrapper(ctx: LintContext, info: ModuleInfo) -> bool:
    if is_lora_layer(info.module) or info.parameters or len(info.children) != 1:
        return False
    child = ctx.graph.info(next(iter(info.children.values())))
    return child.is_leaf and is_linear_like(child.module)


def inner_linear_name(info: ModuleInfo) -> str:
    return next(iter(info.children))


# -- towers ------------------------------------------------------------------------


def tower_label(tower: str) -> str:
    return tower or "(root)"


# -- experts -----------------------------------------------------------------------


def expert_counts(ctx: LintContext) -> set[int]:
    return {v for _, v in ctx.config_values(*EXPERT_COUNT_KEYS) if isinstance(v, int) and v > 1}


def stacked_expert_parameters(ctx: LintContext) -> list[tuple[Group, TensorInfo]]:
    """≥3-D parameters whose leading dimension is the number of experts.

    Evidence, in order: the config's expert count; else a module whose class name says
    "Experts". Convolutions are never experts (their weights are 3-D/4-D/5-D by nature),
    nor is a 3-D parameter whose leading dimension matches no expert count (ViT-style
    ``position_embedding`` tables).
    """

    def compute():
        counts = expert_counts(ctx)
        found = []
        for group in ctx.graph.groups:
            info = group.info
            if isinstance(info.module, (nn.modules.conv._ConvNd, nn.Embedding)):
                continue
            for tensor in info.parameters.values():
                if tensor.ndim < 3 or tensor.shape[0] < 2:
                    continue
                if tensor.shape[0] in counts or (not counts and "expert" in info.class_name.lower()):
                    found.append((group, tensor))
        return found

    return ctx.memo("stacked_expert_parameters", compute)


def unique_suffix(full_paths: list[str], universe: Iterable[str]) -> str:
    """The shortest dotted suffix shared by ``full_paths`` that reaches nothing else in
    ``universe`` under PEFT's suffix matching (``key.endswith('.' + suffix)``)."""
    segments = [p.split(".") for p in full_paths]
    others = [u for u in universe if u not in set(full_paths)]
    # Two segments at least: a bare `weight` would be right today and wrong after any change.
    for k in range(min(2, min(len(s) for s in segments)), min(len(s) for s in segments) + 1):
        tails = {".".join(s[-k:]) for s in segments}
        if len(tails) != 1:
            break
        tail = tails.pop()
        if not any(name_matches(o, [tail]) for o in others):
            return tail
    return full_paths[0]


# -- regexes -----------------------------------------------------------------------


def alternation(names: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


def anchored_regex(patterns: Iterable[str]) -> str:
    """One regex that PEFT full-matches against exactly the given module patterns.

    Patterns sharing a parent become one alternative: ``a.layers.*.attn.{q,k}`` ->
    ``a\\.layers\\.\\d+\\.attn\\.(?:k|q)``.
    """
    by_parent: dict[str, set[str]] = {}
    for pattern in patterns:
        parent, _, leaf = pattern.rpartition(".")
        by_parent.setdefault(parent, set()).add(leaf)
    parts = []
    for parent, leaves in sorted(by_parent.items()):
        prefix = re.escape(parent).replace(r"\*", r"\d+") + r"\." if parent else ""
        parts.append(prefix + alternation(sorted(leaves)))
    return "|".join(parts)


def parameter_paths(ctx: LintContext) -> list[str]:
    """Every parameter's full path, as PEFT's ``target_parameters`` matching sees them."""
    return ctx.memo("parameter_paths", lambda: [
        f"{info.path}.{name}" if info.path else name for info in ctx.graph for name in info.parameters
    ])


def target_parameters_for(ctx: LintContext, groups_params: Iterable[tuple[Group, str]]) -> list[str]:
    """The shortest ``target_parameters`` entries reaching exactly these parameters."""
    universe = parameter_paths(ctx)
    entries = []
    for group, name in groups_params:
        full = [f"{p}.{name}" for p in group.paths]
        entry = unique_suffix(full, universe)
        if entry not in entries:
            entries.append(entry)
    return entries


# -- norms ------------------------------------------------------------------------


def is_rms_norm(info: ModuleInfo) -> bool:
    """An RMS-normalising leaf: a torch/transformers RMSNorm, or a leaf whose class name
    or forward source says RMS (``rsqrt`` / ``pow(2).mean``) and that is no LayerNorm."""
    module = info.module
    if isinstance(module, nn.RMSNorm):
        return True
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)) or not info.is_leaf:
        return False
    if any(t.ndim > 1 for t in info.parameters.values()) or len(info.parameters) > 1:
        return False
    if "rmsnorm" in info.class_name.lower():
        return True
    return "norm" in info.class_name.lower() and forward_computes_rms(info.cls)


def is_norm(info: ModuleInfo) -> bool:
    return is_rms_norm(info) or isinstance(info.module, (nn.LayerNorm, nn.GroupNorm)) or (
        info.is_leaf and "norm" in info.class_name.lower() and "normal" not in info.class_name.lower()
    )


def is_layer_norm(info: ModuleInfo) -> bool:
    return isinstance(info.module, nn.LayerNorm) or (
        info.is_leaf and "layernorm" in info.class_name.lower() and not is_rms_norm(info)
        and any(n == "bias" for n in info.parameters)
    )


# -- repeated blocks ----------------------------------------------------------------


def repeated_blocks(ctx: LintContext) -> list[Group]:
    """Groups of the outermost repeated blocks: non-leaf children of a ``ModuleList``
    with two or more entries (decoder layers, encoder layers), not nested in another."""

    def compute():
        found = []
        block_paths: set[str] = set()
        for info in ctx.graph:
            if isinstance(info.module, nn.ModuleList) and len(info.children) >= 2:
                kids = [ctx.graph.info(c) for c in info.children.values()]
                if all(not k.is_leaf for k in kids):
                    block_paths.update(k.path for k in kids)
        outer = {p for p in block_paths if not any(p.startswith(q + ".") for q in block_paths)}
        for group in ctx.graph.groups:
            if group.info.path in outer:
                found.append(group)
        return found

    return ctx.memo("repeated_blocks", compute)


def attention_modules(ctx: LintContext) -> list[Group]:
    """Groups of modules that carry an integer ``head_dim`` and have submodules."""
    return ctx.memo("attention_modules", lambda: list(ctx.graph.distinct(
        lambda i: not i.is_leaf and isinstance(getattr(i.module, "head_dim", None), int)
    )))
