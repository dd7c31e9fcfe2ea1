"""LORA010 target-matches-container."""

from __future__ import annotations

import re
from collections import defaultdict

from ..findings import Severity
from ..lora.layers import is_lora_layer
from ..lora.recipes import label
from ..lora.verify import Candidate, verified_fix
from ..structure import anchored_regex
from .base import Example, Rule


class TargetMatchesContainer(Rule):
    """A plan entry that names a container, a norm, a router module or a `ModuleList`.

    What it does:
        With a plan (or a common recipe), looks at every module each `target_modules`
        entry matches and flags those PEFT cannot wrap because they are not a layer at
        all: a decoder layer or attention block (a module with submodules), a
        `ModuleList`, a norm, or a router module.

    Why is this bad:
        PEFT matches names, then dispatches on the type: `get_peft_model` raises
        "Target module … is not supported" on the first such module. A bare index such
        as `0` or a short name such as `mlp` matches whole blocks (`all-linear` does
        this on qwen3_omni_moe, whose `mlp.0`/`mlp.2` Linears resolve to the names `0`
        and `2`).

    Example:
        `LoraConfig(target_modules=["self_attn"])` matches every attention block.

    Use instead:
        The Linear layers beneath the matched modules, as printed (verified with PEFT).

    References:
        https://github.com/huggingface/peft/pull/2267
    """

    code = "LORA010"
    name = "target-matches-container"
    severity = Severity.ERROR
    reads_ahead = frozenset({"plans"})
    tools = ("peft",)

    VALID = (Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "o_proj"]}),)
    INVALID = (
        Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["self_attn", "o_proj"]},
                paths=tuple(f"layers.{i}.self_attn" for i in range(4)),
                fix=r'target_modules=r"(?:.*\.)?o_proj|layers\.0\.self_attn\.'),
    )

    def check(self, ctx):
        for evaluation in ctx.plans.evaluations:
            for entry in evaluation.entries:
                by_role = defaultdict(list)
                for path in entry.modules:
                    kind = ctx.peft_roles.why_unwrappable(path)
                    if kind is not None:
                        by_role[kind].append(path)
                for kind, paths in sorted(by_role.items()):
                    info = ctx.graph.info(paths[0])
                    yield self.finding(
                        paths,
                        f"`{entry.entry}` ({label(evaluation.plan)}) matches {len(paths)} {kind} module(s) "
                        f"({info.class_name}); PEFT cannot wrap a {kind} and raises 'Target module … is not supported'",
                        module_class=info.class_name,
                        fix=_fix(ctx, evaluation, entry, paths),
                        details={"entry": entry.entry, "role": kind, "plan": label(evaluation.plan)},
                    )


def _fix(ctx, evaluation, entry, containers):
    """The entry replaced by the adaptable Linears beneath what it matched."""
    under = sorted(i.path for i in ctx.graph if is_lora_layer(i.module)
                   and any(i.path.startswith(c + ".") for c in containers))
    kept = [p for p in entry.modules if p not in containers and is_lora_layer(ctx.graph.info(p).module)]
    targets = sorted(set(under) | set(kept))
    if not targets:
        return None
    plan = evaluation.plan.to_mapping()
    others = ([e for e in evaluation.plan.entries if e != entry.entry]
              if not isinstance(evaluation.plan.target_modules, str) else [])
    regex = "|".join([rf"(?:.*\.)?{re.escape(e)}" for e in others] + [anchored_regex(targets)])
    return verified_fix(ctx.plans.outcome_of, f"Name the Linear layers beneath `{entry.entry}` instead", [Candidate(
        f'target_modules=r"{regex}"', {**plan, "target_modules": regex},
        f"in place of {label(evaluation.plan)}'s target_modules")])
