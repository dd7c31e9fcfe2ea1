"""The result of a lint: per-target results and the summary every renderer reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .anchors import Anchor
from .errors import TargetError
from .findings import Finding, Severity

SCHEMA_VERSION = 1

#: What ``findings``, ``by_severity`` and ``by_code`` count, in the text summary and in JSON.
FINDING_UNIT = "a finding is one rule at one module pattern (model.layers.*.q_proj); modules_by_code counts module paths"


@dataclass(frozen=True)
class ModelSummary:
    class_name: str
    model_type: str | None
    parameters: int
    modules: int
    head: bool = True
    class_reason: str | None = None  # why this class was built (architectures[0], the type's image-text class...)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "class": self.class_name,
            "model_type": self.model_type,
            "parameters": self.parameters,
            "modules": self.modules,
            "head": self.head,
        }
        if self.class_reason:
            out["class_reason"] = self.class_reason
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSummary:
        return cls(data["class"], data["model_type"], data["parameters"], data["modules"], data["head"],
                   data.get("class_reason"))


@dataclass(frozen=True)
class StoredPlan:
    """A plan evaluation read back from the result cache: exactly its report form."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class TargetResult:
    """One target: its model, its findings, or the error that stopped it."""

    target: str
    model: ModelSummary | None = None
    findings: list[Finding] = field(default_factory=list)
    error: TargetError | None = None
    rule_errors: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds; shown with --debug, never in JSON
    graph: Any = None  # the ModuleGraph, for the tree view; not serialised
    tree: dict[str, Any] | None = None  # module_tree.collapsed_tree(): the collapsed module tree as data
    anchor: Anchor | None = None  # the target's file (config.json / factory), for SARIF and annotations
    class_anchors: dict[str, Anchor] = field(default_factory=dict)  # module_class -> its `class` line
    plans: list[Any] = field(default_factory=list)  # archlint.lora.evaluate.PlanEvaluation: the user's plan, or the recipes
    plan_lines: list[str] | None = None  # the plans as the text report shows them, when read from the cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model.to_dict() if self.model else None,
            "findings": [f.to_dict() for f in self.findings],
            "rule_errors": self.rule_errors,
            "error": self.error.to_dict() if self.error else None,
            "plans": [p.to_dict() for p in self.plans],
        }

    def to_data(self) -> dict[str, Any]:
        """Everything a renderer reads, as JSON data: what the result cache stores (no graph, no timings)."""
        from .render.plans import plan_lines

        data = self.to_dict()
        data["anchor"] = self.anchor.to_dict() if self.anchor else None
        data["class_anchors"] = {name: a.to_dict() for name, a in self.class_anchors.items()}
        data["plan_lines"] = self.plan_lines if self.plan_lines is not None else plan_lines(self.plans)
        data["tree"] = self.tree
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TargetResult:
        """The inverse of :meth:`to_data`; renders byte for byte as the result it was made from."""
        error = data.get("error")
        return cls(
            target=data["target"],
            model=ModelSummary.from_dict(data["model"]) if data.get("model") else None,
            findings=[Finding.from_dict(f) for f in data["findings"]],
            error=TargetError(error["kind"], error["message"]) if error else None,
            rule_errors=[dict(e) for e in data["rule_errors"]],
            anchor=Anchor.from_dict(data["anchor"]) if data.get("anchor") else None,
            class_anchors={name: Anchor.from_dict(a) for name, a in data["class_anchors"].items()},
            plans=[StoredPlan(p) for p in data["plans"]],
            plan_lines=list(data["plan_lines"]),
            tree=data.get("tree"),
        )


@dataclass
class Report:
    """Everything one run of archlint found."""

    results: list[TargetResult]
    archlint_version: str
    versions: dict[str, str | None]
    rules: list[str]
    baseline: Any = None  # a baseline.BaselineResult when --baseline was given

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def errors(self) -> list[TargetResult]:
        return [r for r in self.results if r.error]

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def counts(self) -> dict[str, int]:
        """Findings per severity; a finding is one rule at one module pattern."""
        out = {str(s): 0 for s in sorted(Severity, reverse=True)}
        for f in self.findings:
            out[str(f.severity)] += 1
        return out

    def exit_code(self, fail_on: Severity | None) -> int:
        """0 clean, 1 findings at or above ``fail_on``, 3 a target failed (DESIGN decision 9)."""
        if self.errors:
            return 3
        worst = self.worst()
        if fail_on is not None and worst is not None and worst >= fail_on:
            return 1
        return 0

    def to_dict(self) -> dict[str, Any]:
        out = self._to_dict()
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        return out

    def _to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "archlint_version": self.archlint_version,
            "versions": self.versions,
            "rules": self.rules,
            "results": [r.to_dict() for r in self.results],
            "summary": {
                "targets": len(self.results),
                "failed_targets": len(self.errors),
                "findings": len(self.findings),
                "by_severity": self.counts(),
                "unit": FINDING_UNIT,
                "by_code": _by_code(self.findings),
                "modules_by_code": _modules_by_code(self.findings),
            },
        }


def _by_code(findings: list[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in sorted(findings, key=lambda f: f.code):
        out[f.code] = out.get(f.code, 0) + 1
    return out


def _modules_by_code(findings: list[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in sorted(findings, key=lambda f: f.code):
        out[f.code] = out.get(f.code, 0) + f.count
    return out
