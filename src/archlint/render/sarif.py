"""``sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

One run; ``tool.driver.rules`` from the rules' metadata and docstrings; one result per
finding (a module pattern, already collapsed over repeated layers). Each result carries a
logical location (the module pattern, kind ``module``) and, where there is one, a
physical location: the class definition when the class lives in the repository (a local
model), else the target's ``config.json`` or factory file. GitHub shows only results with
a physical location inside the repository.

``partialFingerprints`` are a hash of (code, model, module pattern) -- never the message
text, counts or versions -- so an alert keeps its identity across runs, depth changes
and library upgrades (``primaryLocationLineHash`` is the key GitHub reads; without it the
upload action would hash the anchor line, and every finding anchored on one
``config.json`` line would collapse into one alert).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from ..anchors import Anchor
from ..findings import Confidence, Finding, Severity
from ..report import RULES_URL, Report, RuleInfo, TargetResult

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = RULES_URL.rsplit("/blob/", 1)[0]
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
PRECISION = {Confidence.HIGH: "high", Confidence.MEDIUM: "medium", Confidence.LOW: "low"}
PROBLEM = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "recommendation"}
MAX_DESCRIPTION = 1024  # GitHub's limit on short/full descriptions


def render(report: Report, options) -> str:
    root = Path(options.root or os.getcwd())
    rules = _rules(report)
    index = {r.code: i for i, r in enumerate(rules)}
    results = []
    for result in report.results:
        model = model_key(result.target, root)
        seen: Counter[str] = Counter()
        for finding in result.findings:
            key = fingerprint(finding.code, model, finding.pattern)
            seen[key] += 1
            if seen[key] > 1:  # same code and pattern twice in one model (different classes or messages)
                key = fingerprint(finding.code, model, f"{finding.pattern}#{seen[key]}")
            results.append(_result(finding, result, index, key, root))
    run = {
        "tool": {"driver": {
            "name": "archlint",
            "version": report.archlint_version,
            "semanticVersion": report.archlint_version,
            "informationUri": INFORMATION_URI,
            "rules": [_descriptor(r) for r in rules],
        }},
        "invocations": [_invocation(report)],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {"versions": report.versions},
    }
    log = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def fingerprint(code: str, model: str, pattern: str) -> str:
    return hashlib.sha256(f"{code}\0{model}\0{pattern}".encode()).hexdigest()


def model_key(target: str, root: Path) -> str:
    """The model's identity for fingerprints: a Hub id without ``@revision``, a local folder
    relative to the repository root (``x/config.json`` and ``x`` are the same model), or the
    target as written (model types, factories)."""
    path = Path(target)
    if path.exists():
        path = path.resolve()
        if path.name == "config.json":
            path = path.parent
        return Anchor(str(path)).relative_to(root) or path.as_posix()
    return target.split("@", 1)[0]


def _rules(report: Report) -> list[RuleInfo]:
    wanted = set(report.rules) | {f.code for f in report.findings}
    return [report.rule_info[c] for c in sorted(wanted) if c in report.rule_info]


def _descriptor(rule: RuleInfo) -> dict:
    descriptor = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": _cut(rule.summary)},
        "fullDescription": {"text": _cut(rule.description)},
        "help": {"text": rule.help_markdown, "markdown": rule.help_markdown},
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "tags": [rule.code.rstrip("0123456789").lower(), *rule.tools][:20],
            "precision": PRECISION[rule.confidence],
            "problem.severity": PROBLEM[rule.severity],
            "origin": rule.origin,
        },
    }
    if rule.url:
        descriptor["helpUri"] = rule.url
    return descriptor


def _result(finding: Finding, result: TargetResult, index: dict[str, int], key: str, root: Path) -> dict:
    location: dict = {"logicalLocations": [{
        "name": finding.pattern.rsplit(".", 1)[-1] or "(model)",
        "fullyQualifiedName": finding.pattern or "(model)",
        "kind": "module",
    }]}
    physical = _physical(finding, result, root)
    if physical:
        location["physicalLocation"] = physical
    text = (f"{result.target}: {finding.pattern or '(model)'} ({finding.module_class} ×{finding.count}): "
            f"{finding.message}")
    if finding.fix:
        text += f". Fix: {finding.fix.title}"
    out = {
        "ruleId": finding.code,
        "level": LEVEL[finding.severity],
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"primaryLocationLineHash": f"{key[:16]}:1", "archlint/v1": key},
        "properties": {
            "target": result.target,
            "module_class": finding.module_class,
            "count": finding.count,
            "paths": list(finding.paths),
            "confidence": str(finding.confidence),
            "fix": finding.fix.to_dict() if finding.fix else None,
        },
    }
    if finding.code in index:
        out["ruleIndex"] = index[finding.code]
    return out


def _physical(finding: Finding, result: TargetResult, root: Path) -> dict | None:
    """The class definition if it is in the repository, else the target's file."""
    candidates = [result.class_anchors.get(finding.module_class), result.anchor]
    for anchor in candidates:
        relative = anchor.relative_to(root) if anchor else None
        if relative:
            return {"artifactLocation": {"uri": relative, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": anchor.line}}
    if result.anchor:  # outside the repository (a Hub cache): a valid location GitHub will not show
        return {"artifactLocation": {"uri": Path(result.anchor.file).as_uri()},
                "region": {"startLine": result.anchor.line}}
    return None


def _invocation(report: Report) -> dict:
    notes = [{
        "level": "error",
        "message": {"text": r.error.message},  # names the target already
        "descriptor": {"id": r.error.kind},
        "properties": {"target": r.target},
    } for r in report.errors]
    notes += [{
        "level": "error",
        "message": {"text": f"{r.target}: rule {e['code']} crashed: {e['message']}"},
        "associatedRule": {"id": e["code"]},
        "properties": {"target": r.target},
    } for r in report.results for e in r.rule_errors]
    return {"executionSuccessful": not notes, "toolExecutionNotifications": notes}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"
