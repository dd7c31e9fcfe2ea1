"""What a module a plan reaches *is*, for LORA007 and LORA010: a router, a container,
a norm or a ``ModuleList`` -- read from types and shapes, not names alone."""

from __future__ import annotations

from torch import nn

from ..peft_support import is_linear_like, is_lora_layer
from ..probe.readings import role_map
from ..probe.roles import Role
from ..structure import (
    expert_counts,
    is_norm,
    linear_wrappers,
    stacked_expert_parameters,
)


def expert_sizes(ctx) -> set[int]:
    """Expert counts: the config's, and the leading dimension of stacked expert tensors."""
    return ctx.memo("plan_expert_sizes", lambda: expert_counts(ctx) | {
        t.shape[0] for _, t in stacked_expert_parameters(ctx)})


def is_router(ctx, path: str) -> bool:
    """A MoE router, as the data flow of its block says (its output is scored into a
    top-k/argmax selection, or gathered at experts a token-id table chose). Only asked in
    a model that has experts; where no trace tells, :func:`router_guess` does."""
    verdict, _ = router_verdict(ctx, path)
    return verdict


def router_verdict(ctx, path: str) -> tuple[bool, str]:
    """(is it a router, why nothing could be read -- "" when the trace told)."""
    if path not in _paths(ctx) and path.rpartition(".")[0] not in _paths(ctx):
        return False, ""
    if not expert_sizes(ctx):
        return False, ""  # no experts, nothing to route to
    answer = role_map(ctx).of(path)
    if answer.read:
        return Role.ROUTER in answer.roles, ""
    return router_guess(ctx, path), answer.unread


def router_guess(ctx, path: str) -> bool:
    """What types and shapes alone suggest, when no trace tells: a module whose class says
    Router, or a Linear / module owning a 2-D weight whose output size is the number of
    experts. Reported only at low confidence."""
    if path not in _paths(ctx):
        return False
    info = ctx.graph.info(path)
    sizes = expert_sizes(ctx)
    if "router" in info.class_name.lower() and not is_linear_like(info.module):
        return True
    if not sizes:
        return False
    if isinstance(info.module, nn.Linear):
        return info.module.out_features in sizes
    weight = info.parameters.get("weight")
    return weight is not None and weight.ndim == 2 and weight.shape[0] in sizes and weight.shape[0] < weight.shape[1]


def role(ctx, path: str) -> str | None:
    """Why PEFT cannot wrap this module as a LoRA layer: "ModuleList", "norm", "router",
    "container"; None for a module PEFT wraps (or any other leaf)."""
    if path not in _paths(ctx):
        return None
    info = ctx.graph.info(path)
    if is_lora_layer(info.module) or path in _wrappers(ctx):  # a linear wrapper is LORA001's finding
        return None
    if isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
        return "ModuleList"
    if is_norm(info):
        return "norm"
    if is_router(ctx, path):
        return "router"
    if not info.is_leaf:
        return "container"
    return None


def _paths(ctx) -> set[str]:
    return ctx.memo("plan_graph_paths", lambda: {i.path for i in ctx.graph})


def _wrappers(ctx) -> set[str]:
    return ctx.memo("plan_wrapper_paths", lambda: {p for g in linear_wrappers(ctx) for p in g.paths})
