"""LORA004 target-name-collision."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Severity
from ..lora.layers import is_linear_like, is_lora_layer
from ..lora.recipes import recipe_names
from ..lora.verify import Candidate, nothing_under, verified_fix
from ..structure import anchored_regex, tower_label
from .base import Example, Rule


class TargetNameCollision(Rule):
    """One leaf name names modules of different classes or in different towers.

    What it does:
        Groups the adaptable projections (Linears and linear wrappers) by their last
        path segment, the name a `target_modules` list matches, and flags names shared
        by different classes or by different sub-models (`language_model`,
        `vision_tower`, `audio_tower`, encoder/decoder).

    Why is this bad:
        A bare name reaches every tower. When one of the modules it reaches is not a
        PEFT layer type, `get_peft_model` crashes (the Gemma-4 `q_proj` case: error).
        When all are Linears, the adapter silently covers towers you did not mean to
        train, and serving stacks that only expect language-model adapters reject it
        (info).

    Example:
        On Gemma-4, `q_proj` is an `nn.Linear` in `model.language_model` and a
        `Gemma4ClippableLinear` in `model.vision_tower` and `model.audio_tower`.

    Use instead:
        One anchored regex per intended tower, as printed in the fix, or
        `exclude_modules` for the towers to leave alone.

    References:
        https://github.com/huggingface/peft/issues/3129
    """

    code = "LORA004"
    name = "target-name-collision"
    severity = Severity.ERROR
    reads_ahead = frozenset({"plans"})
    severity_note = ("warning when a plan reaches a name PEFT cannot wrap that no common recipe lists; info when "
                     "all are adaptable, or when without a plan no common recipe lists the name")
    tools = ("peft", "vllm", "sglang")

    VALID = (Example("fixtures/zoo/towers.py:SingleTower"),)
    INVALID = (
        Example(
            "fixtures/zoo/towers.py:WrappedVisionTower",
            paths=tuple(f"{tower}.layers.{i}.attn.{name}" for tower in ("language", "vision")
                        for i in (0, 1) for name in ("q_proj", "v_proj")),
            fix=r"language\.layers\.\d+\.attn\.(?:q_proj|v_proj)",
        ),
    )

    def check(self, ctx):
        wrappers = {p for g in ctx.linear_wrappers for p in g.paths}
        inner = {c for p in wrappers for c in ctx.graph.info(p).children.values()}
        by_name = defaultdict(list)
        for info in ctx.graph:
            if info.path in inner or not (is_linear_like(info.module) or info.path in wrappers):
                continue
            by_name[info.leaf_name].append(info)
        names_in_recipes = recipe_names(ctx.built.model_type)
        colliding = {
            name: infos for name, infos in sorted(by_name.items())
            if len({i.tower for i in infos}) > 1 or len({i.class_name for i in infos}) > 1
        }
        fix = _fix(ctx, [i for infos in colliding.values() for i in infos])
        scope = ctx.plans.scope
        for name, infos in colliding.items():
            if scope is not None and not _matters_to_plan([i for i in infos if i.path in scope]):
                continue
            unsupported = sorted({i.class_name for i in infos if not is_lora_layer(i.module)})
            if unsupported and name in names_in_recipes:
                severity, effect = Severity.ERROR, f"PEFT raises on {', '.join(unsupported)}"
            elif unsupported and scope is not None:  # the user's plan names it
                severity, effect = Severity.WARNING, f"PEFT raises on {', '.join(unsupported)} if targeted"
            elif unsupported:  # no common recipe names it: only a target naming it raises
                severity, effect = Severity.INFO, f"PEFT raises on {', '.join(unsupported)} if a target names it"
            else:
                severity, effect = Severity.INFO, "a bare-name target adapts every tower listed"
            yield self._finding(name, infos, severity, effect, fix)

    def _finding(self, name, infos, severity, effect, fix):
        by_tower = defaultdict(lambda: defaultdict(int))
        for i in infos:
            by_tower[tower_label(i.tower)][i.class_name] += 1
        where = "; ".join(
            f"{tower}: " + ", ".join(f"{n} {cls}" for cls, n in sorted(classes.items()))
            for tower, classes in sorted(by_tower.items())
        )
        return self.finding(
            [i.path for i in infos],
            f"`{name}` names {len(infos)} modules across {len(by_tower)} tower(s) ({where}); {effect}",
            module_class=", ".join(sorted({i.class_name for i in infos})),
            severity=severity,
            pattern=name,
            fix=fix,
            details={"name": name, "towers": {t: dict(c) for t, c in sorted(by_tower.items())}},
        )


def _matters_to_plan(reached) -> bool:
    """A collision matters to a plan that reaches more than one of the towers, or a module
    PEFT cannot wrap; an anchored regex inside one tower is the fix, not a finding."""
    return len({i.tower for i in reached}) > 1 or any(not is_lora_layer(i.module) for i in reached)


def _fix(ctx, infos):
    """One anchored regex per tower, over the plain-Linear modules of every colliding name,
    each verified to adapt nothing in the other towers."""
    scope = ctx.plans.scope  # with a plan, fix what the plan meant: its own modules only
    if scope is not None and any(i.path in scope for i in infos):
        infos = [i for i in infos if i.path in scope]
    towers = sorted({i.tower for i in infos})
    candidates = []
    for tower in towers:
        plain = sorted({i.pattern for i in infos if i.tower == tower and is_lora_layer(i.module)})
        if plain:
            regex = anchored_regex(plain)
            others = [t for t in towers if t != tower and t and not tower.startswith(t + ".")]
            candidates.append(Candidate(f'target_modules=r"{regex}"', {"target_modules": regex},
                                        f"{tower_label(tower)} only", expect=nothing_under(others)))
    if not candidates:
        return None
    return verified_fix(ctx.plans.outcome_of, "Anchor the names to the tower you mean to adapt (one regex per tower)",
                        candidates)
