"""LORA009 untargetable-parameters."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class UntargetableParameters(Rule):
    """Free parameters on modules that also have submodules.

    What it does:
        Lists parameters registered directly on a non-leaf module: attention sinks
        (`sinks`), router and expert scales (`scale`, `per_expert_scale`), layer scalars.
        Stacked experts are LORA006's.

    Why is this bad:
        No `target_modules` entry can reach them, bitsandbytes never quantizes them, and
        under LoRA they stay frozen unless made trainable on purpose. Usually fine;
        worth knowing when a recipe should train them.

    Example:
        `GptOssAttention.sinks` (one learned logit per head).

    Use instead:
        Nothing, if they should stay frozen. To train them, unfreeze them by name after
        `get_peft_model`, or list the owning module in `modules_to_save`.

    References:
        gpt-oss attention sinks (`sinks`); Gemma-4's router scales
    """

    code = "LORA009"
    name = "untargetable-parameters"
    severity = Severity.INFO
    tools = ("peft", "bitsandbytes")

    VALID = (Example("fixtures/zoo/towers.py:SingleTower"),)
    INVALID = (
        Example("fixtures/zoo/params.py:SinkAttention", paths=("layers.0.attn", "layers.1.attn"), fix="sinks"),
    )

    def check(self, ctx):
        experts = {(g.pattern, t.name) for g, t in ctx.stacked_expert_parameters}
        for group in ctx.graph.distinct(lambda i: bool(i.parameters) and not i.is_leaf):
            names = sorted(n for n in group.representative.parameters if (group.pattern, n) not in experts)
            if not names:
                continue
            shapes = ", ".join(f"{n} {list(group.representative.parameters[n].shape)}" for n in names)
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} owns {shapes} directly; no target_modules entry reaches "
                f"{'them' if len(names) > 1 else 'it'}",
                module_class=group.representative.class_name,
                fix=Fix(
                    "Unfreeze by name after get_peft_model if they should train",
                    "for name, p in model.named_parameters():\n"
                    f"    if name.rsplit('.', 1)[-1] in {names!r}:\n        p.requires_grad_(True)",
                ),
                details={"parameters": names},
            )
