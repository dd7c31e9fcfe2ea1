"""The library face: ``lint(target) -> Report``."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from importlib.metadata import PackageNotFoundError, version

from .anchors import class_anchors, target_anchor
from .build import build
from .config import Config, load_config
from .errors import TargetError, UsageError, one_line
from .findings import Finding, merge_findings
from .graph import ModuleGraph
from .plan import Plan
from .plan.context import plan_evaluations
from .plan.restrict import restrict
from .checkpoint import agreement as checkpoint_agreement, checkpoint_source
from .quantize import QuantizationRequest, preview as quantization_preview, wanted as wanted_quantization
from .report import ModelSummary, Report, TargetResult
from .resolve import resolve
from .rules import LintContext, Rule, all_rules, validate_selectors
from .selection import Layer, selected_codes
from .suppress import suppress
from .targets import target_identity

__all__ = ["lint", "lint_many"]


def lint(
    target: str,
    *,
    select: Sequence[str] | None = None,
    extend_select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    debug: bool = False,
    config: Config | str | os.PathLike | None = None,
    plan: Plan | None = None,
    quantization: str | None = None,
    check_checkpoint: bool = False,
) -> Report:
    """Lint one target (Hub id, folder, config.json, model type or ``FILE.py:NAME``).

    ``config`` is a configuration file (or a loaded :class:`Config`) whose selection,
    severities, per-module-ignores and per-model settings apply; the keyword options
    beat it, as the command line does. Inline ``# archlint: ignore[...]`` pragmas in
    the model's own source always apply. ``plan`` is a LoRA plan
    (:class:`archlint.plan.Plan`) evaluated instead of the common recipes. ``quantization``
    previews a method (``bnb-4bit``, ``bnb-8bit``, ``fp8`` or a quantization_config JSON file)
    with transformers' own quantizer; ``check_checkpoint`` reads a Hub repository's
    safetensors headers (a local folder's are always read).
    """
    return lint_many([target], select=select, extend_select=extend_select, ignore=ignore,
                     trust_remote_code=trust_remote_code, offline=offline, debug=debug, config=config,
                     plan=plan, quantization=quantization, check_checkpoint=check_checkpoint)


def lint_many(
    targets: Sequence[str] | None = None,
    *,
    select: Sequence[str] | None = None,
    extend_select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    debug: bool = False,
    config: Config | str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    plan: Plan | None = None,
    quantization: str | None = None,
    check_checkpoint: bool = False,
) -> Report:
    """Lint several targets into one report; a target that fails does not stop the others.

    With no ``targets``, the ``models`` of ``config`` are linted. ``progress(message)``, if
    given, is called as each target is fetched and built. ``plan`` (one LoRA plan for every
    target) is evaluated instead of the common recipes; without it, a model's plan from the
    configuration file is.
    """
    cfg = config if isinstance(config, Config) else load_config(config) if config is not None else Config()
    validate_selectors([*(select or ()), *(extend_select or ()), *(ignore or ())])
    codes = selected_codes([
        Layer(cfg.select, cfg.extend_select, cfg.ignore),
        Layer(select or None, extend_select or (), ignore or ()),
    ])
    rules = [r for r in all_rules() if r.code in codes]
    request = QuantizationRequest.parse(quantization) if quantization else None
    results = []
    for label, where, identity in _targets(targets, cfg):
        entry = cfg.model_entry(identity)
        options = _Options(
            rules=rules, codes=codes, offline=offline, debug=debug, config=cfg, identity=identity,
            trust_remote_code=trust_remote_code or bool(entry and entry.trust_remote_code),
            progress=progress or _silent,
            plan=plan if plan is not None else (entry.plan if entry else None),
            quantization=request, check_checkpoint=check_checkpoint,
        )
        result = _lint_one(where, options)
        result.target = label
        results.append(result)
    return Report(results=results, archlint_version=archlint_version(), versions=versions(), rules=codes)


def _targets(targets: Sequence[str] | None, cfg: Config) -> list[tuple[str, str, str]]:
    """``(label, what resolve() gets, identity)``: a command-line target resolves as typed
    (relative to the current directory); a configured model through its file's directory."""
    if targets:
        return [(t, t, target_identity(t, Path.cwd())) for t in targets]
    if not cfg.models:
        where = f"{cfg.file} declares no `models`" if cfg.file else "no configuration file declares `models`"
        raise UsageError(f"no target given and {where}; name a target or add `models = [...]` to [tool.archlint]")
    return [(m.target, m.location, m.location) for m in cfg.models]


@dataclass(frozen=True)
class _Options:
    rules: Sequence[type[Rule]]
    codes: Sequence[str]
    config: Config
    identity: str  # the target as targets.target_identity gives it: the key of per-model settings
    trust_remote_code: bool
    offline: bool
    debug: bool
    progress: Callable[[str], None]
    plan: Plan | None
    quantization: QuantizationRequest | None = None
    check_checkpoint: bool = False


def _silent(message: str) -> None:
    pass


def _lint_one(target: str, options: _Options) -> TargetResult:
    result = TargetResult(target)
    clock = time.perf_counter()
    try:
        options.progress(f"resolving {target}")
        spec = resolve(target, trust_remote_code=options.trust_remote_code, offline=options.offline)
        result.timings["resolve"] = time.perf_counter() - clock
        options.progress(f"building {target} on the meta device")
        built = build(spec)
        result.timings["build"] = built.seconds
    except TargetError as e:
        if options.debug:
            raise
        result.error = e
        return result
    result.anchor = target_anchor(spec)
    clock = time.perf_counter()
    graph = ModuleGraph(built.module)
    result.timings["graph"] = time.perf_counter() - clock
    result.graph = graph
    result.model = ModelSummary(built.class_name, built.model_type, graph.parameter_count(), len(graph), built.head)
    ctx = LintContext(graph=graph, built=built, config=spec.config or getattr(built.module, "config", None),
                      plan=options.plan)
    _load_time_facts(ctx, spec, result, options)
    findings: list[Finding] = []
    clock = time.perf_counter()
    for rule in options.rules:
        try:
            findings.extend(rule().check(ctx))
        except Exception as e:  # one broken rule must not hide the others' findings
            if options.debug:
                raise
            result.rule_errors.append({"code": rule.code, "message": one_line(e)})
    result.timings["rules"] = time.perf_counter() - clock
    result.timings.update(ctx.timings)  # phases inside the rules (probes, forwards), already counted in "rules"
    findings = _plans(ctx, result, options.rules, findings, debug=options.debug)
    ran = set(options.codes) - {e["code"] for e in result.rule_errors}  # a crashed rule's pragmas cannot be judged
    kept = suppress(merge_findings(findings), graph, options.config.ignores_for(options.identity), ran)
    cfg = options.config
    if cfg.severity:
        kept = [dataclasses.replace(f, severity=cfg.severity_for(f.code, f.severity)) for f in kept]
    result.findings = merge_findings(kept)
    result.class_anchors = class_anchors(graph, result.findings)
    return result


def _load_time_facts(ctx: LintContext, spec, result: TargetResult, options: _Options) -> None:
    """The quantization preview and the checkpoint agreement, computed before the rules that read them."""
    if wanted_quantization(options.quantization, ctx.config):
        clock = time.perf_counter()
        ctx.quantization = result.quantization = quantization_preview(
            ctx.built.module, ctx.config, options.quantization, tower_of=ctx.graph.tower_of)
        result.timings["quantization"] = time.perf_counter() - clock
    source = checkpoint_source(spec, hub=options.check_checkpoint)
    if source is not None:
        clock = time.perf_counter()
        ctx.checkpoint = result.checkpoint = checkpoint_agreement(ctx.built.module, source, offline=options.offline)
        result.timings["checkpoint"] = time.perf_counter() - clock


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
