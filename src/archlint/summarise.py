"""The live analysis summarised into the report's data: the collapsed module tree, the
plan evaluations and the rules' metadata (:mod:`.report` holds the types)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from .docs import RULES_URL, page_name, rule_markdown
from .graph import ModuleGraph
from .lora.evaluate import PlanEvaluation
from .lora.recipes import label
from .report import PlanEntry, PlanSummary, RuleInfo, TreeNode
from .rules.base import Rule


def module_tree(graph: ModuleGraph) -> TreeNode:
    """The module tree with identical siblings (same pattern and structure) collapsed."""
    root = next(iter(graph.nx.nodes))
    return TreeNode(graph.info(root).class_name, graph.info(root).class_name, (root,), _children(graph, [root]))


def _children(graph: ModuleGraph, equivalents: list[str]) -> tuple[TreeNode, ...]:
    """The children of the first of ``equivalents`` (modules of one structure), each
    standing also for the same child of the others."""
    info = graph.info(equivalents[0])
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for attr, child in info.children.items():
        seen[(graph.info(child).pattern, graph.info(child).structure_key)].append(attr)
    nodes = []
    for attrs in seen.values():
        paths = [graph.info(e).children[a] for a in attrs for e in equivalents]
        label = attrs[0] if len(attrs) == 1 else f"{_ranges(attrs)} ×{len(attrs)}"
        nodes.append(TreeNode(label, graph.info(paths[0]).class_name, tuple(paths), _children(graph, paths)))
    return tuple(nodes)


def _ranges(attrs: list[str]) -> str:
    if not all(a.isdigit() for a in attrs):
        return ",".join(attrs)
    nums = sorted(int(a) for a in attrs)
    spans, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return "[" + ",".join(spans) + "]"


def plan_summary(evaluation: PlanEvaluation) -> PlanSummary:
    outcome = evaluation.outcome
    error = outcome.error or {}
    return PlanSummary(
        source=evaluation.plan.source,
        label=label(evaluation.plan),
        verdict=evaluation.verdict,
        engine=outcome.engine,
        engine_label=evaluation.engine_label,
        peft_version=evaluation.peft_version,
        r=evaluation.plan.r,
        entries=tuple(PlanEntry(e.entry, e.matches, e.classes, e.towers, e.layers_reached, e.layers_total, e.rerouted_to)
                      for e in evaluation.entries),
        modules=outcome.modules,
        parameters=outcome.parameters,
        trainable=outcome.trainable,
        error_type=error.get("type"),
        error_message=error.get("message"),
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
