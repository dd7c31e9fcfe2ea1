"""DIST002 moe-zero3-leaf."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from .base import Example, Rule


class MoeZero3Leaf(Rule):
    """Sparse MoE blocks whose experts are separate modules that run only when routed to.

    What it does:
        Finds MoE blocks that hold their experts as a `ModuleList` (or `ModuleDict`) of
        at least two modules of one class with their own parameters, sized like the
        number of experts (the config's expert count, or a router `Linear` in the same
        block whose output size is the list's length).

    Why is this bad:
        DeepSpeed ZeRO-3 gathers a module's parameters in hooks around its forward and
        expects every rank to call the same modules. An expert that no token on one
        rank routes to is skipped there, so its all-gather and reduce-scatter never
        match across ranks and training hangs. Experts stored as stacked 3-D
        parameters in one module (transformers 5's layout) are gathered as a whole on
        every call and are not flagged.

    Example:
        A block with `gate = nn.Linear(d, 4)` and `experts = nn.ModuleList(4 × MLP)`
        whose forward loops over the experts a token chose.

    Use instead:
        Make the block a ZeRO-3 leaf, so its parameters are gathered once for the whole
        block: `deepspeed.utils.set_z3_leaf_modules(model, [BlockClass])`, or
        accelerate's `transformer_moe_cls_names` / `ACCELERATE_DEEPSPEED_MOE_LAYER_CLS_NAMES`.

    References:
        https://github.com/deepspeedai/DeepSpeed/issues/4808,
        https://github.com/deepspeedai/DeepSpeed/pull/4966 (MOE-05)
    """

    code = "DIST002"
    name = "moe-zero3-leaf"
    severity = Severity.WARNING
    confidence = Confidence.MEDIUM
    tools = ("deepspeed",)

    VALID = (Example("fixtures/zoo/experts.py:StackedExperts", note="stacked 3-D experts: one module, always called"),)
    INVALID = (
        Example("fixtures/zoo/experts.py:PerExpertMoe", paths=("layers.0", "layers.1"), fix="set_z3_leaf_modules"),
    )

    def check(self, ctx):
        counts = ctx.expert_counts
        blocks: dict[str, list[str]] = {}
        for info in ctx.graph:
            if not isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
                continue
            members = list(info.module.children())
            if len(members) < 2 or len({type(m) for m in members}) != 1:
                continue
            if not any(True for _ in members[0].parameters()):
                continue
            parent = ctx.graph.parent(info.path)
            if parent is None or not (len(members) in counts or _router_for(parent.module, info.module, len(members))):
                continue
            blocks.setdefault(parent.class_name, []).append(parent.path)
        for cls, paths in sorted(blocks.items()):
            yield self.finding(
                paths,
                f"{cls} runs each of its per-expert modules only for the tokens routed to it: "
                "under DeepSpeed ZeRO-3 ranks that route differently wait on each other forever",
                module_class=cls,
                fix=Fix("Make the MoE block a ZeRO-3 leaf",
                        f"from deepspeed.utils import set_z3_leaf_modules\n"
                        f"set_z3_leaf_modules(model, [{cls}])\n"
                        f"# accelerate: deepspeed_config transformer_moe_cls_names: {cls}"),
                details={"block_class": cls},
            )


def _router_for(block: nn.Module, experts: nn.Module, count: int) -> bool:
    """A Linear in the block, outside the experts, that scores ``count`` experts."""
    inside = {id(m) for m in experts.modules()}
    return any(isinstance(m, nn.Linear) and m.out_features == count and id(m) not in inside for m in block.modules())
