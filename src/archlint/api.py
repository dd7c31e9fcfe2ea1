"""The library face: ``lint(target) -> Report``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from .build import build
from .errors import TargetError, one_line
from .findings import Finding, merge_findings
from .graph import ModuleGraph
from .plan import Plan
from .plan.context import plan_evaluations
from .plan.restrict import restrict
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
    plan: Plan | None = None,
) -> Report:
    """Lint one target (Hub id, folder, config.json, model type or ``FILE.py:NAME``).

    ``plan`` is a LoRA plan (:class:`archlint.plan.Plan`) to evaluate instead of the common recipes.
    """
    return lint_many([target], select=select, ignore=ignore, trust_remote_code=trust_remote_code,
                     offline=offline, debug=debug, plan=plan)


def lint_many(
    targets: Sequence[str],
    *,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    debug: bool = False,
    plan: Plan | None = None,
) -> Report:
    """Lint several targets into one report; a target that fails does not stop the others.

    ``plan`` (one LoRA plan for every target) is evaluated instead of the common recipes.
    """
    validate_selectors([*(select or ()), *(ignore or ())])
    rules = select_rules(select, ignore)
    results = [
        _lint_one(t, rules, trust_remote_code=trust_remote_code, offline=offline, debug=debug, plan=plan) for t in targets
    ]
    return Report(results=results, archlint_version=archlint_version(), versions=versions(),
                  rules=[r.code for r in rules])


def _lint_one(target: str, rules: Sequence[type[Rule]], *, trust_remote_code: bool, offline: bool, debug: bool,
              plan: Plan | None = None) -> TargetResult:
    result = TargetResult(target)
    clock = time.perf_counter()
    try:
        spec = resolve(target, trust_remote_code=trust_remote_code, offline=offline)
        result.timings["resolve"] = time.perf_counter() - clock
        built = build(spec)
        result.timings["build"] = built.seconds
    except TargetError as e:
        if debug:
            raise
        result.error = e
        return result
    clock = time.perf_counter()
    graph = ModuleGraph(built.module)
    result.timings["graph"] = time.perf_counter() - clock
    result.graph = graph
    result.model = ModelSummary(built.class_name, built.model_type, graph.parameter_count(), len(graph), built.head)
    ctx = LintContext(graph=graph, built=built, config=spec.config or getattr(built.module, "config", None), plan=plan)
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
    findings = _plans(ctx, result, rules, findings, debug=debug)
    result.findings = merge_findings(findings)
    return result


def _plans(ctx: LintContext, result: TargetResult, rules, findings: list[Finding], *, debug: bool) -> list[Finding]:
    """Evaluate the plan (or the common recipes) into the result; with a plan, keep only
    the LORA001-006 findings about what it touches. Skipped when no LoRA rule is selected
    and no plan was given."""
    if ctx.plan is None and not any(r.code.startswith("LORA") for r in rules):
        return findings
    try:
        result.plans = plan_evaluations(ctx)
    except Exception as e:  # a plan PEFT cannot even be asked about must not hide the findings
        if debug:
            raise
        result.rule_errors.append({"code": "PLAN", "message": one_line(e)})
        return findings
    if ctx.plan is not None:
        findings = restrict(ctx, findings, result.plans[0])
    return findings


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
