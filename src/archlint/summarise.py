"""The live analysis summarised into the report's data: the plan evaluations and the
rules' metadata (:mod:`.report` holds the types; :mod:`.module_tree` the collapsed tree)."""

from __future__ import annotations

from collections.abc import Iterable

from .docs import RULES_URL, page_name, rule_markdown
from .lora.evaluate import PlanEvaluation
from .lora.recipes import label
from .report import PlanEntry, PlanSummary, RuleInfo
from .rules.base import Rule


def plan_summary(evaluation: PlanEvaluation) -> PlanSummary:
    outcome = evaluation.outcome
    return PlanSummary(
        source=evaluation.plan.source,
        label=label(evaluation.plan),
        verdict=evaluation.verdict,
        engine=outcome.engine,
        engine_label=evaluation.engine_label,
        peft_version=evaluation.peft_version,
        r=evaluation.plan.r,
        entries=tuple(PlanEntry(e.entry, e.matches, e.classes, e.towers, e.layers_reached, e.layers_total,
                                e.rerouted_to) for e in evaluation.entries),
        modules=outcome.modules,
        parameters=outcome.parameters,
        trainable=outcome.trainable,
        checked=evaluation.checked,
        error=evaluation.error,
        notes=evaluation.notes,
    )


def rule_info(rules: Iterable[type[Rule]]) -> dict[str, RuleInfo]:
    out = {}
    for rule in rules:
        sections = rule.sections()
        out[rule.code] = RuleInfo(
            code=rule.code, name=rule.name, summary=rule.summary(),
            description=" ".join((sections.get("What it does") or rule.summary()).split()),
            help_markdown=rule_markdown(rule), severity=rule.severity, confidence=rule.confidence,
            tools=tuple(rule.tools), origin=rule.origin, url=rule_url(rule),
        )
    return out


def rule_url(rule: type[Rule]) -> str | None:
    """A plugin's own ``url`` attribute, or the built-in rule's page in ``rules/``."""
    if getattr(rule, "url", None):
        return rule.url
    return RULES_URL + page_name(rule) if rule.origin == "archlint" else None
