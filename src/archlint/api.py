"""The library face: ``lint(target) -> Report``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from .anchors import class_anchors, target_anchor
from .build import build
from .errors import TargetError, one_line
from .findings import Finding, merge_findings
from .graph import ModuleGraph
from .report import ModelSummary, Report, TargetResult
from .resolve import resolve
from .rules import LintContext, Rule, select_rules, validate_selectors

__all__ = ["lint", "lint_many"]


def lint(
    target: str,
    *,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    debug: bool = False,
) -> Report:
    """Lint one target (Hub id, folder, config.json, model type or ``FILE.py:NAME``)."""
    return lint_many([target], select=select, ignore=ignore, trust_remote_code=trust_remote_code,
                     offline=offline, debug=debug)


def lint_many(
    targets: Sequence[str],
    *,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    debug: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Lint several targets into one report; a target that fails does not stop the others.

    ``progress(message)``, if given, is called as each target is fetched and built.
    """
    validate_selectors([*(select or ()), *(ignore or ())])
    rules = select_rules(select, ignore)
    results = [
        _lint_one(t, rules, trust_remote_code=trust_remote_code, offline=offline, debug=debug,
                  progress=progress or _silent) for t in targets
    ]
    return Report(results=results, archlint_version=archlint_version(), versions=versions(),
                  rules=[r.code for r in rules])


def _silent(message: str) -> None:
    pass


def _lint_one(target: str, rules: Sequence[type[Rule]], *, trust_remote_code: bool, offline: bool, debug: bool,
              progress: Callable[[str], None]) -> TargetResult:
    result = TargetResult(target)
    clock = time.perf_counter()
    try:
        progress(f"resolving {target}")
        spec = resolve(target, trust_remote_code=trust_remote_code, offline=offline)
        result.timings["resolve"] = time.perf_counter() - clock
        progress(f"building {target} on the meta device")
        built = build(spec)
        result.timings["build"] = built.seconds
    except TargetError as e:
        if debug:
            raise
        result.error = e
        return result
    result.anchor = target_anchor(spec)
    clock = time.perf_counter()
    graph = ModuleGraph(built.module)
    result.timings["graph"] = time.perf_counter() - clock
    result.graph = graph
    result.model = ModelSummary(built.class_name, built.model_type, graph.parameter_count(), len(graph), built.head)
    ctx = LintContext(graph=graph, built=built, config=spec.config or getattr(built.module, "config", None))
    findings: list[Finding] = []
    clock = time.perf_counter()
    for rule in rules:
        try:
            findings.extend(rule().check(ctx))
        except Exception as e:  # one broken rule must not hide the others' findings
            if debug:
                raise
            result.rule_errors.append({"code": rule.code, "message": one_line(e)})
    result.timings["rules"] = time.perf_counter() - clock
    result.timings.update(ctx.timings)  # phases inside the rules (probes, forwards), already counted in "rules"
    result.findings = merge_findings(findings)
    result.class_anchors = class_anchors(graph, result.findings)
    return result


def archlint_version() -> str:
    try:
        return version("archlint")
    except PackageNotFoundError:
        return "0+unknown"


def versions() -> dict[str, str | None]:
    """The versions of the libraries whose behaviour the report predicts."""
    out = {}
    for name in ("torch", "transformers", "peft", "huggingface_hub"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
