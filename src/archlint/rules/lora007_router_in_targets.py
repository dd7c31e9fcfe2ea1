"""LORA007 router-in-targets."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Confidence, Severity
from ..lora.recipes import label
from ..lora.verify import Candidate, verified_fix
from .base import Example, Rule


class RouterInTargets(Rule):
    """A MoE router that the plan (or a common recipe) adapts.

    What it does:
        Looks at what PEFT actually wraps for the plan -- or, without a plan, for each
        common recipe -- and flags MoE routers among them, including a router weight that
        PEFT's transformers-v5 MoE conversion re-routes the name `gate` to
        (`gate.weight`). A router is what the data flow of its block says: a projection
        whose output is scored into a top-k / argmax selection, or gathered at experts a
        token-id table chose -- never its name or its width (a `k_proj` as wide as the
        expert count is a key). Where the block cannot be traced, a module whose shape
        suggests a router is reported as info, at low confidence, with what could not be read.

    Why is this bad:
        The router decides which experts see each token; a low-rank update to it shifts
        the routing distribution, unbalances expert load and destabilises training.
        `all-linear` adapts it silently.

    Example:
        `all-linear` on mistralai/Mixtral-8x7B-v0.1 adapts `model.layers.*.mlp.gate.weight`
        (PEFT's conversion turns the v4 name `gate` into the router weight).

    Use instead:
        Keep the router out: `exclude_modules` for router modules, or an explicit
        `target_modules` list without it. The fix is verified with PEFT.

    References:
        https://github.com/huggingface/peft/pull/2638
    """

    code = "LORA007"
    name = "router-in-targets"
    severity = Severity.WARNING
    reads_ahead = frozenset({"plans"})
    severity_note = "info, at low confidence, when the block cannot be traced and only its shape suggests a router"
    tools = ("peft",)

    VALID = (Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "o_proj"]},
                     note="attention only"),)
    INVALID = (
        Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": "all-linear"},
                paths=tuple(f"layers.{i}.router" for i in range(4)), fix='exclude_modules=["router"]'),
    )

    def check(self, ctx):
        by_pattern = defaultdict(lambda: {"paths": set(), "recipes": [], "evaluations": []})
        for evaluation in ctx.plans.evaluations:
            outcome = evaluation.outcome
            reached = list(outcome.modules) if outcome.ok else [p for e in evaluation.entries for p in e.modules]
            reached += [p.rpartition(".")[0] for p in (outcome.parameters if outcome.ok else
                                                       [p for e in evaluation.entries for p in e.parameters])]
            verdicts = {p: ctx.peft_roles.router_verdict(p) for p in dict.fromkeys(reached)}
            routers = sorted(p for p, (router, _) in verdicts.items() if router)
            if not routers:
                continue
            key = tuple(routers)
            by_pattern[key]["paths"].update(routers)
            by_pattern[key]["unread"] = {p: verdicts[p][1] for p in routers if verdicts[p][1]}
            by_pattern[key]["recipes"].append(label(evaluation.plan))
            by_pattern[key]["evaluations"].append(evaluation)
        for routers, found in by_pattern.items():
            info = ctx.graph.info(routers[0])
            evaluation = found["evaluations"][0]
            via = " (as the parameter `weight`, through PEFT's MoE conversion)" if any(
                p.rpartition(".")[0] in routers for p in evaluation.outcome.parameters) else ""
            unread = found.get("unread") or {}
            recipes = f"{', '.join(found['recipes'])} adapt{'s' if len(found['recipes']) == 1 else ''}"
            if unread:  # no trace told: what shapes suggest, said as such
                yield self.finding(
                    routers,
                    f"{recipes} {info.class_name}, which may be the MoE router (its shape suggests it); "
                    f"its role could not be read: {next(iter(unread.values()))}",
                    module_class=info.class_name, severity=Severity.INFO, confidence=Confidence.LOW,
                    fix=_fix(ctx, evaluation, routers),
                    details={"recipes": found["recipes"], "roles": None, "unread": unread},
                )
                continue
            answers = [ctx.roles.of(p) for p in routers[:1]]
            yield self.finding(
                routers,
                f"{recipes} the MoE router {info.class_name}{via}; a LoRA delta on the router shifts expert routing",
                module_class=info.class_name,
                fix=_fix(ctx, evaluation, routers),
                details={"recipes": found["recipes"], "roles": {a.path: a.to_dict() for a in answers}},
            )


def _fix(ctx, evaluation, routers):
    plan = evaluation.plan.to_mapping()
    names = sorted({p.rsplit(".", 1)[-1] for p in routers})
    router_set = set(routers)

    def no_router(outcome):
        hit = [p for p in [*outcome.modules, *(x.rpartition(".")[0] for x in outcome.parameters)] if p in router_set]
        return f"still adapts {hit[0]}" if hit else None

    excluded = {**plan, "exclude_modules": sorted(set(plan.get("exclude_modules") or []) | set(names))}
    candidates = [Candidate(f"exclude_modules={names!r}".replace("'", '"'), excluded, "keep the router out",
                            expect=no_router)]
    kept = sorted({p.rsplit(".", 1)[-1] for p in evaluation.outcome.modules if p not in router_set}
                  | {n for n, param in evaluation.outcome.rerouted.items() if param.rpartition(".")[0] not in names})
    if kept:
        explicit = {**plan, "target_modules": kept}
        candidates.append(Candidate(f"target_modules={kept!r}".replace("'", '"'), explicit,
                                    "the same targets, listed, without the router", expect=no_router))
    return verified_fix(ctx.plans.outcome_of, "Keep the router out of the adapter", candidates)
