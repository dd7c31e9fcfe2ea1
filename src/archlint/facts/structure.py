"""Structural facts: read from the module graph and the config, never from a forward."""

from __future__ import annotations

from torch import nn

from ..graph import Group, TensorInfo
from ..structure import EXPERT_COUNT_KEYS, is_linear_wrapper
from .base import Facts, fact


@fact(phase="structure")
def repeated_blocks(facts: Facts) -> list[Group]:
    """Groups of the outermost repeated blocks (decoder layers, encoder layers)."""
    outer = facts.graph.blocks.outer
    return [g for g in facts.graph.groups if g.representative.path in outer]


@fact(phase="structure")
def linear_wrappers(facts: Facts) -> list[Group]:
    """Groups of modules that are not a PEFT layer type but hold exactly one ``nn.Linear``
    as their only submodule and own no parameters themselves (``Gemma4ClippableLinear``)."""
    return list(facts.graph.distinct(lambda info: is_linear_wrapper(facts.graph, info)))


@fact(phase="structure")
def linear_wrapper_paths(facts: Facts) -> frozenset[str]:
    """Every path of :func:`linear_wrappers`."""
    return frozenset(p for g in facts.linear_wrappers for p in g.paths)


@fact(phase="structure")
def expert_counts(facts: Facts) -> frozenset[int]:
    """The numbers of routed experts the config declares (any sub-config)."""
    return frozenset(v for _, v in facts.config_values(*EXPERT_COUNT_KEYS) if isinstance(v, int) and v > 1)


@fact(phase="structure")
def stacked_expert_parameters(facts: Facts) -> list[tuple[Group, TensorInfo]]:
    """≥3-D parameters whose leading dimension is the number of experts.

    Evidence, in order: the config's expert count; else a module whose class name says
    "Experts". Convolutions are never experts (their weights are 3-D/4-D/5-D by nature),
    nor is a 3-D parameter whose leading dimension matches no expert count (ViT-style
    ``position_embedding`` tables).
    """
    counts = facts.expert_counts
    found = []
    for group in facts.graph.groups:
        info = group.representative
        if isinstance(info.module, (nn.modules.conv._ConvNd, nn.Embedding)):
            continue
        for tensor in info.parameters.values():
            if tensor.ndim < 3 or tensor.shape[0] < 2:
                continue
            if tensor.shape[0] in counts or (not counts and "expert" in info.class_name.lower()):
                found.append((group, tensor))
    return found


@fact(phase="structure")
def expert_sizes(facts: Facts) -> frozenset[int]:
    """Expert counts: the config's, and the leading dimension of stacked expert tensors."""
    return facts.expert_counts | {t.shape[0] for _, t in facts.stacked_expert_parameters}


@fact(phase="structure")
def parameter_paths(facts: Facts) -> list[str]:
    """Every parameter's full path, as PEFT's ``target_parameters`` matching sees them."""
    return [f"{info.path}.{name}" if info.path else name for info in facts.graph for name in info.parameters]


@fact(phase="structure")
def attention_modules(facts: Facts) -> list[Group]:
    """Groups of modules that carry an integer ``head_dim`` and have submodules."""
    return list(facts.graph.distinct(lambda i: not i.is_leaf and isinstance(getattr(i.module, "head_dim", None), int)))
