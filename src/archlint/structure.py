"""Structural helpers several rules share: what a module is, read from its type, its
parameter layout and its source -- never from names alone, except where a name is the
only evidence (and the caller then says so in its confidence). The per-lint results
built from these are facts (:mod:`archlint.facts.structure`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

from .graph import Group, ModuleGraph, ModuleInfo
from .lora.layers import is_linear_like, is_lora_layer
from .lora.targets import reaches
from .source import forward_computes_rms

#: Config keys that hold the number of routed experts, across model families.
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")


# -- linear wrappers -------------------------------------------------------------


def is_linear_wrapper(graph: ModuleGraph, info: ModuleInfo) -> bool:
    """Not a PEFT layer type, no parameters of its own, and exactly one child: a leaf Linear.
    A ``ModuleList``/``ModuleDict`` holding one Linear is a container, not a wrapper: it has
    no forward, so nothing calls it in place of its Linear."""
    if is_lora_layer(info.module) or info.parameters or len(info.children) != 1:
        return False
    if isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
        return False
    child = graph.info(next(iter(info.children.values())))
    return child.is_leaf and is_linear_like(child.module)


def inner_linear_name(info: ModuleInfo) -> str:
    return next(iter(info.children))


# -- towers ------------------------------------------------------------------------


def tower_label(tower: str) -> str:
    return tower or "(root)"


# -- target entries ------------------------------------------------------------------


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
        if not any(reaches(o, (tail,)) for o in others):
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


def target_parameters_for(universe: Iterable[str], groups_params: Iterable[tuple[Group, str]]) -> list[str]:
    """The shortest ``target_parameters`` entries reaching exactly these parameters among
    ``universe`` (every parameter path of the model)."""
    universe = list(universe)
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
