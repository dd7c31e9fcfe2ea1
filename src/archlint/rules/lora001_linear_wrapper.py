"""LORA001 linear-wrapper."""

from __future__ import annotations

from ..findings import Severity
from ..lora.layers import is_linear_like
from ..lora.recipes import broken_recipe_names, broken_recipes
from ..lora.targets import reaches
from ..lora.verify import Candidate, nothing_under, verified_fix
from ..probe.extras import extra_ops, summarise
from ..structure import alternation, anchored_regex, inner_linear_name
from .base import Example, Rule


class LinearWrapper(Rule):
    """A module that is not a PEFT layer type but only wraps one `nn.Linear`.

    What it does:
        Flags modules that own no parameters of their own and hold exactly one
        `nn.Linear` (or transformers `Conv1D`) as their only submodule, such as
        `Gemma4ClippableLinear` in Gemma-4's vision and audio towers. Buffers
        (clip bounds) and element-wise ops around the inner Linear are allowed; the
        wrapper's forward is recorded on meta tensors and what it adds (clamps,
        soft-caps, scales) is named in the finding and listed in `details`.

    Why is this bad:
        PEFT dispatches on the module's type, not on what it contains. When a
        `target_modules` name such as `q_proj` reaches the wrapper, `get_peft_model`
        raises `ValueError: Target module Gemma4ClippableLinear(...) is not supported`,
        after the weights were downloaded. Tools keyed on names (export, PTQ configs,
        serving stacks) see the weight nested one level down as `<name>.linear.weight`.

    Example:
        LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]) on
        google/gemma-4-E2B-it reaches 16 vision and 12 audio wrappers named `q_proj`.

    Use instead:
        Scope the targets to the tower whose projections are plain Linears with an
        anchored regex (PEFT full-matches a string `target_modules`), or target the
        inner `.linear` of each wrapper: the wrapper's forward still runs around the
        LoRA-augmented Linear, so its clamps are kept. Do not replace the wrapper by its
        inner Linear unless its extra behaviour is a no-op.

    References:
        https://github.com/huggingface/peft/issues/3129,
        https://github.com/huggingface/peft/pull/3154
    """

    code = "LORA001"
    name = "linear-wrapper"
    severity = Severity.ERROR
    reads_ahead = frozenset({"plans"})
    severity_note = "info when neither the plan nor a common recipe reaches it: only a target naming it raises"
    tools = ("peft", "trl", "export")

    VALID = (
        Example("fixtures/zoo/towers.py:PlainTowers", note="every projection is a plain nn.Linear"),
        Example("fixtures/zoo/subclasses.py:TaggedLinearModel", note="an nn.Linear subclass is a Linear to PEFT"),
        Example("fixtures/zoo/towers.py:OneLinearList", note="a ModuleList holding one Linear is a container"),
    )
    INVALID = (
        Example(
            "fixtures/zoo/towers.py:WrappedVisionTower",
            paths=("vision.layers.0.attn.q_proj", "vision.layers.0.attn.v_proj",
                   "vision.layers.1.attn.q_proj", "vision.layers.1.attn.v_proj"),
            fix=r"language\.layers\.\d+\.attn\.(?:q_proj|v_proj)",
        ),
        Example(
            "fixtures/zoo/towers.py:WrappedQvPlainQkvo",
            paths=("vision.0.q_proj", "vision.0.v_proj", "vision.1.q_proj", "vision.1.v_proj"),
            fix=r"language\.\d+\.(?:k_proj|o_proj|q_proj|v_proj)",
            note="the fix keeps the plain k_proj and o_proj the q,k,v,o recipe adapts",
        ),
    )

    def check(self, ctx):
        groups = ctx.linear_wrappers
        if not groups:
            return
        fix = self._fix(ctx, groups)
        for group in groups:
            if not ctx.plans.touches(group.paths):
                continue  # with a plan, only the wrappers it reaches
            info = group.representative
            inner = inner_linear_name(info)
            severity = None
            if ctx.plan is not None:  # speak of the user's plan, not of recipes they did not choose
                recipes = []
                breaks = f"; your LoRA plan ({ctx.plan.source}) reaches it, so get_peft_model raises"
            else:
                recipes = broken_recipes(group.paths, ctx.built.model_type)
                breaks = f"; breaks the {', '.join(recipes)} recipe{'s' if len(recipes) > 1 else ''}" if recipes else ""
                if not recipes:  # nothing the user runs reaches it: true, but only a name that targets it raises
                    severity = Severity.INFO
                    breaks = (f"; no common recipe reaches it, get_peft_model raises only if a target "
                              f"names `{info.leaf_name}`")
            result = ctx.probes.probe(info.module)
            extras = ctx.probes.read(info.module, extra_ops)
            adds = f" and adds {summarise(extras)}" if extras else " and adds nothing" if extras == [] else ""
            yield self.finding(
                group.paths,
                f"{info.class_name} is not a PEFT layer type; it wraps the nn.Linear `.{inner}`{adds}{breaks}",
                module_class=info.class_name,
                severity=severity,
                fix=fix,
                details={"inner": inner, "breaks_recipes": recipes, "buffers": sorted(info.buffers),
                         "extra_ops": extras, "unwrap_safe": extras == [],
                         **({} if result.ok else {"probe_error": result.error})},
            )

    def _fix(self, ctx, groups):
        scope = ctx.plans.scope  # with a plan, fix what the plan meant: its own names only
        if scope is not None and any(p in scope for g in groups for p in g.paths):
            groups = [g for g in groups if any(p in scope for p in g.paths)]
        wrapper_paths = {p for g in groups for p in g.paths}
        names = sorted({p.rsplit(".", 1)[-1] for p in wrapper_paths})
        inner = sorted({inner_linear_name(g.representative) for g in groups})
        # The plain Linears the plan reaches, or (without a plan) those named by the wrappers or by
        # a recipe the wrappers break: a fix must keep every module the user's recipe adapted.
        keep = set(names) | broken_recipe_names(wrapper_paths, ctx.built.model_type)
        plain = [
            g for g in ctx.graph.distinct(lambda i: is_linear_like(i.module) and i.path not in wrapper_paths)
            if not _inside(g.representative.path, wrapper_paths)
            and (g.representative.path in scope if scope is not None else reaches(g.representative.path, keep))
        ]
        inner_regex = rf".*\.{alternation(names)}\.{alternation(inner)}"
        candidates = []
        if plain:
            scoped = anchored_regex(g.pattern for g in plain)
            candidates.append(Candidate(f'target_modules=r"{scoped}"', {"target_modules": scoped},
                                        "only the plain-Linear projections",
                                        expect=nothing_under(sorted(wrapper_paths))))
            both = f"{scoped}|{inner_regex}"
            candidates.append(Candidate(f'target_modules=r"{both}"', {"target_modules": both},
                                        "also the wrapped ones, through their inner Linear"))
        else:
            candidates.append(Candidate(f'target_modules=r"{inner_regex}"', {"target_modules": inner_regex},
                                        "the inner Linear of each wrapper"))
        return verified_fix(ctx.plans.outcome_of,
                            "Target plain Linears only: anchor the regex, or reach the wrapped Linear through its "
                            "child; do not replace a wrapper by its Linear when it adds ops", candidates)


def _inside(path: str, containers: set[str]) -> bool:
    return any(path.startswith(c + ".") for c in containers)
