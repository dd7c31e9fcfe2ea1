"""The result of a lint, as data: per-target results and the summary every renderer reads.

Everything here is plain data (strings, numbers, tuples of dataclasses): no live model,
graph or rule class. Renderers import only this module and :mod:`.findings`; what they
need of the analysis (the collapsed module tree, the plan evaluations, the rules'
metadata) is summarised into these types when the report is assembled
(:mod:`.summarise`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .anchors import Anchor
from .errors import TargetError
from .findings import Confidence, Finding, Severity

SCHEMA_VERSION = 1

#: Where the rule reference pages are published (SARIF helpUri, annotations).
RULES_URL = "https://github.com/archlint/archlint/blob/main/rules/"


class Verdict(enum.StrEnum):
    """PEFT's verdict on a plan: it wraps the plan, or it raises."""

    OK = "ok"
    ERROR = "error"


class Engine(enum.StrEnum):
    """Who answered for PEFT: the installed PEFT, or archlint's reimplementation of it."""

    PEFT = "peft"
    REIMPLEMENTATION = "reimplementation"


@dataclass(frozen=True)
class RuleInfo:
    """What renderers show of a rule: its metadata and documentation."""

    code: str
    name: str
    summary: str
    description: str  # the "What it does" section, on one line (or the summary)
    help_markdown: str  # the rule's reference page
    severity: Severity
    confidence: Confidence
    tools: tuple[str, ...]
    origin: str
    url: str | None


@dataclass(frozen=True)
class PlanEntry:
    """What one ``target_modules`` entry of a plan reaches."""

    entry: str
    matches: int
    classes: tuple[str, ...]
    towers: tuple[str, ...]
    layers_reached: int
    layers_total: int
    rerouted_to: str | None = None  # the expert parameter PEFT's MoE conversion turned this name into

    def to_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "matches": self.matches, "classes": list(self.classes),
                "layers_reached": self.layers_reached, "layers_total": self.layers_total}


@dataclass(frozen=True)
class PlanSummary:
    """One evaluated LoRA plan (the user's, or a common recipe) and PEFT's verdict on it."""

    source: str  # "flags", "peft-config", "config", "recipe:<name>"
    label: str  # "seven standard names", "plan (flags)"
    verdict: Verdict
    engine: Engine
    engine_label: str  # "PEFT 0.21.2 on the meta model", for people
    peft_version: str | None
    r: int
    entries: tuple[PlanEntry, ...] = ()
    modules: tuple[str, ...] = ()  # wrapped module paths
    parameters: tuple[str, ...] = ()  # wrapped parameter paths
    trainable: int = 0
    checked: tuple[str, ...] = ()  # the stages that ran clean: inject, forward, backward
    error: dict[str, str | None] | None = None  # type, message (stable across runs), stage, module
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    @property
    def error_type(self) -> str | None:
        return self.error["type"] if self.error else None

    @property
    def error_message(self) -> str | None:
        return self.error["message"] if self.error else None

    @property
    def is_recipe(self) -> bool:
        return self.source.startswith("recipe:")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "verdict": self.verdict,
            "error": dict(self.error) if self.error else None,
            "checked": list(self.checked),
            "entries": [e.to_dict() for e in self.entries],
            "modules": list(self.modules),
            "parameters": list(self.parameters),
            "trainable_parameters": self.trainable,
            "peft_version": self.peft_version,
        }


#: What ``findings``, ``by_severity`` and ``by_code`` count, in the text summary and in JSON.
FINDING_UNIT = ("a finding is one rule at one module pattern (model.layers.*.q_proj); "
                "modules_by_code counts module paths")


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


@dataclass
class TargetResult:
    """One target: its model, its findings, or the error that stopped it."""

    target: str
    model: ModelSummary | None = None
    findings: list[Finding] = field(default_factory=list)
    error: TargetError | None = None
    rule_errors: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds; shown with --debug, never in JSON
    tree: dict[str, Any] | None = None  # module_tree.collapsed_tree(): the collapsed module tree as data
    anchor: Anchor | None = None  # the target's file (config.json / factory), for SARIF and annotations
    class_anchors: dict[str, Anchor] = field(default_factory=dict)  # module_class -> its `class` line
    plans: list[PlanSummary] = field(default_factory=list)  # the user's plan, or the recipes
    quantization: Any = None  # archlint.quantize.QuantizationPreview (data), when asked for or shipped in the config
    checkpoint: Any = None  # archlint.checkpoint.CheckpointAgreement (data), when a checkpoint's headers were read

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "model": self.model.to_dict() if self.model else None,
            "findings": [f.to_dict() for f in self.findings],
            "rule_errors": self.rule_errors,
            "error": self.error.to_dict() if self.error else None,
            "plans": [p.to_dict() for p in self.plans],
            **({"quantization": self.quantization.to_dict()} if self.quantization is not None else {}),
            **({"checkpoint": self.checkpoint.to_dict()} if self.checkpoint is not None else {}),
        }

    def to_data(self) -> dict[str, Any]:
        """Everything a renderer reads, as JSON data: what the result cache stores (no graph,
        no timings). A quantization preview is stored as its ``to_dict`` data; a result with a
        checkpoint agreement is not cached (see :attr:`cacheable`)."""
        data = self.to_dict()
        data["plans"] = [_plan_data(p) for p in self.plans]
        data["anchor"] = self.anchor.to_dict() if self.anchor else None
        data["class_anchors"] = {name: a.to_dict() for name, a in self.class_anchors.items()}
        data["tree"] = self.tree
        return data

    @property
    def error_cause(self) -> str:
        """A failed target's cause and what to do, without the target's name in front."""
        message = self.error.message
        for name in (self.target, getattr(self.error, "target", None)):
            if name and message.startswith(f"{name}: "):
                return message[len(name) + 2:]
        return message

    @property
    def cacheable(self) -> bool:
        """A failed target is linted again; a checkpoint agreement depends on shard headers the
        cache key does not cover. A quantization preview depends only on the config, the
        request and the library versions, which the key covers."""
        return self.error is None and self.checkpoint is None

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
            plans=[_plan_from_data(p) for p in data["plans"]],
            tree=data.get("tree"),
            quantization=StoredSection(data["quantization"]) if data.get("quantization") is not None else None,
        )


@dataclass(frozen=True)
class StoredSection:
    """A report section the result cache stored as its data (a quantization preview):
    renderers read it through ``to_dict`` alone, so it renders as the section it was."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _plan_data(plan: PlanSummary) -> dict[str, Any]:
    return {**{k: getattr(plan, k) for k in plan.__dataclass_fields__ if k != "entries"},
            "entries": [dict(e.__dict__) for e in plan.entries]}


def _plan_from_data(data: dict[str, Any]) -> PlanSummary:
    entries = tuple(PlanEntry(**{**e, "classes": tuple(e["classes"]), "towers": tuple(e["towers"])})
                    for e in data["entries"])
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "entries"}
    return PlanSummary(**{**fields, "verdict": Verdict(data["verdict"]), "engine": Engine(data["engine"]),
                          "entries": entries, "error": dict(data["error"]) if data.get("error") else None})


@dataclass
class Report:
    """Everything one run of archlint found."""

    results: list[TargetResult]
    archlint_version: str
    versions: dict[str, str | None]
    rules: list[str]
    rule_info: dict[str, RuleInfo] = field(default_factory=dict)  # code -> metadata, for every code reported
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
        """0 clean, 1 findings at or above ``fail_on``, 3 a target failed."""
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
