"""DIST002 moe-zero3-leaf."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from .base import Example, Rule


class MoeZero3Leaf(Rule):
    """Sparse MoE blocks whose experts are separate modules that run only when routed to.

    What it does:
        Finds MoE blocks that hold their experts as a `ModuleList` (or `ModuleDict`) of
        at least two modules of one class with their own parameters, routed to by a
        `Linear` in the same block whose output size is the list's length and whose
        output feeds a top-k/argmax selection in its trace (the router's role, read from
        data flow), or whose block stops tracing at a value-dependent op (`nonzero`:
        which tokens chose which expert). A Linear of that width that is no router (a
        position bias with as many heads as there are layers) is not enough; where no
        router's trace can be
        read but the config declares that many experts, the finding is info at low
        confidence.

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
    severity_note = "info, at low confidence, when no router can be read and only the config's expert count fits"
    confidence = Confidence.MEDIUM
    tools = ("deepspeed",)

    VALID = (Example("fixtures/zoo/experts.py:StackedExperts", note="stacked 3-D experts: one module, always called"),
             Example("fixtures/zoo/experts.py:PositionBiasEncoder",
                     note="a Linear as wide as the layer list that routes nothing"))
    INVALID = (
        Example("fixtures/zoo/experts.py:PerExpertMoe", paths=("layers.0", "layers.1"), fix="set_z3_leaf_modules"),
    )

    def check(self, ctx):
        blocks: dict[tuple[str, bool], list[str]] = {}
        unread: dict[str, str] = {}
        for info in ctx.graph:
            if not isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
                continue
            # the experts: children with parameters, all of one class (a Dropout beside them is no expert)
            members = [m for m in info.module.children() if any(True for _ in m.parameters())]
            if len(members) < 2 or len({type(m) for m in members}) != 1:
                continue
            parent = ctx.graph.parent(info.path)
            if parent is None:
                continue
            routed, why = _routed(ctx, parent, info, len(members))
            if routed is False:
                continue
            blocks.setdefault((parent.class_name, routed is True), []).append(parent.path)
            if routed is None:
                unread[parent.class_name] = why
        for (cls, read), paths in sorted(blocks.items()):
            message = (f"{cls} runs each of its per-expert modules only for the tokens routed to it: "
                       "under DeepSpeed ZeRO-3 ranks that route differently wait on each other forever")
            if not read:
                message = (f"{cls} holds per-expert modules sized like the config's expert count, but no "
                           f"router could be read in its trace ({unread[cls]}); if it routes tokens, "
                           "DeepSpeed ZeRO-3 ranks that route differently wait on each other forever")
            yield self.finding(
                paths,
                message,
                module_class=cls,
                severity=None if read else Severity.INFO,
                confidence=None if read else Confidence.LOW,
                fix=Fix("Make the MoE block a ZeRO-3 leaf",
                        f"from deepspeed.utils import set_z3_leaf_modules\n"
                        f"set_z3_leaf_modules(model, [{cls}])\n"
                        f"# accelerate: deepspeed_config transformer_moe_cls_names: {cls}"),
                details={"block_class": cls},
            )


def _routed(ctx, block, experts, count: int) -> tuple[bool | None, str]:
    """Whether ``block`` routes tokens to the ``count`` modules of ``experts``: a Linear in
    the block, outside the experts, scoring ``count`` outputs whose trace feeds a top-k /
    argmax selection (a router, read from data flow). A Linear of that width that is no
    router (a relative-position bias with as many heads as there are layers) says no. None
    when no such Linear's role could be read and the config names ``count`` experts."""
    inside = {id(m) for m in experts.module.modules()}
    scorers = [f"{block.path}.{name}" if block.path else name for name, m in block.module.named_modules()
               if isinstance(m, nn.Linear) and m.out_features == count and id(m) not in inside]
    why = "no Linear scores that many outputs"
    for path in scorers:
        verdict = ctx.roles.is_router(path)
        if verdict is not None:
            return verdict, ""
        why = ctx.roles.of(path).unread or why
    if scorers and _data_dependent(ctx.roles.block(block.module).error):
        # the block's own forward stops at an op whose output size depends on the values
        # (which tokens chose which expert): per-token dispatch, the pattern this rule is about
        return True, ""
    if count in ctx.expert_counts:
        return None, why
    return False, why


def _data_dependent(error: str) -> bool:
    """A trace error raised by an op whose result depends on tensor values (``nonzero``,
    ``torch.where`` with one argument, ``.item()``), which meta tensors do not have."""
    return any(s in error for s in ("nonzero", "data-dependent", "item()", "_local_scalar_dense"))
