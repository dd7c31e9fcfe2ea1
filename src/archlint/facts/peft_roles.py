"""Why PEFT cannot wrap a module a plan reaches: a router (read from its block's data
flow, :mod:`.roles`), a container, a norm or a ``ModuleList`` (LORA007, LORA010)."""

from __future__ import annotations

from torch import nn

from ..lora.layers import is_linear_like, is_lora_layer
from ..probe.roles import Role
from ..structure import is_norm
from .base import Facts, fact


class PeftRoles:
    """Per-path answers for one model; cheap, so computed on each question."""

    def __init__(self, facts: Facts):
        self._facts = facts
        self._paths = {info.path for info in facts.graph}

    def is_router(self, path: str) -> bool:
        """A MoE router, as the data flow of its block says (its output is scored into a
        top-k/argmax selection, or gathered at experts a token-id table chose); where no
        trace tells, what types and shapes suggest (:meth:`router_verdict` says which)."""
        return self.router_verdict(path)[0]

    def router_verdict(self, path: str) -> tuple[bool, str]:
        """(is it a router, why the trace could not tell -- "" when it told). Only a model
        with experts has routers."""
        if path not in self._paths and path.rpartition(".")[0] not in self._paths:
            return False, ""
        if not self._facts.expert_sizes:
            return False, ""
        answer = self._facts.roles.of(path)
        if answer.read:
            return Role.ROUTER in answer.roles, ""
        return self._router_guess(path), answer.unread

    def _router_guess(self, path: str) -> bool:
        """A module whose class says Router, or a Linear / module owning a 2-D weight whose
        output size is the number of experts -- reported only at low confidence."""
        if path not in self._paths:
            return False
        info = self._facts.graph.info(path)
        sizes = self._facts.expert_sizes
        if "router" in info.class_name.lower() and not is_linear_like(info.module):
            return True
        if isinstance(info.module, nn.Linear):
            return info.module.out_features in sizes
        weight = info.parameters.get("weight")
        return (weight is not None and weight.ndim == 2 and weight.shape[0] in sizes
                and weight.shape[0] < weight.shape[1])

    def why_unwrappable(self, path: str) -> str | None:
        """Why PEFT cannot wrap this module as a LoRA layer: "ModuleList", "norm", "router",
        "container"; None for a module PEFT wraps, a linear wrapper (LORA001's finding), or
        any other leaf."""
        if path not in self._paths:
            return None
        info = self._facts.graph.info(path)
        if is_lora_layer(info.module) or path in self._facts.linear_wrapper_paths:
            return None
        if isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
            return "ModuleList"
        if is_norm(info):
            return "norm"
        if self.is_router(path):
            return "router"
        if not info.is_leaf:
            return "container"
        return None


@fact(phase="structure")
def peft_roles(facts: Facts) -> PeftRoles:
    """What each module is to PEFT (see :class:`PeftRoles`)."""
    return PeftRoles(facts)
