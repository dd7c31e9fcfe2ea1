"""The library face: ``lint(target) -> Report``."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .anchors import class_anchors, target_anchor
from .build import build
from .checkpoint import checkpoint_source
from .config import Config, load_config
from .deadline import DEFAULT_TIMEOUT, Deadline, DeadlineExceeded
from .errors import TargetError, UsageError, internal_error, one_line, timeout_error
from .facts import Facts
from .findings import Finding, merge_findings
from .graph import ModuleGraph
from .lora.plan import Plan
from .module_tree import collapsed_tree
from .quantize import QuantizationRequest
from .quiet import quiet_libraries
from .report import ModelSummary, Report, TargetResult
from .resolve import resolve
from .rules import Rule, all_rules
from .selection import Layer, selected_codes, validate_selectors
from .summarise import plan_summary, rule_info
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
    timeout: float | None = None,
    quantization: str | None = None,
    check_checkpoint: bool = False,
) -> Report:
    """Lint one target (Hub id, folder, config.json, model type or ``FILE.py:NAME``).

    ``config`` is a configuration file (or a loaded :class:`Config`) whose selection,
    severities, per-module-ignores and per-model settings apply; the keyword options
    beat it, as the command line does. Inline ``# archlint: ignore[...]`` pragmas in
    the model's own source always apply. ``plan`` is a LoRA plan
    (:class:`archlint.lora.Plan`) evaluated instead of the common recipes. ``quantization``
    previews a method (``bnb-4bit``, ``bnb-8bit``, ``fp8`` or a quantization_config JSON file)
    with transformers' own quantizer; ``check_checkpoint`` reads a Hub repository's
    safetensors headers (a local folder's are always read). ``timeout``
    is the target's time limit in seconds (default: the configuration's, else
    :data:`archlint.deadline.DEFAULT_TIMEOUT`; ``0`` for none).

    Whatever the target holds, a report is returned: a failure is the result's ``error``
    (with ``debug=True`` it is raised instead).
    """
    return lint_many([target], select=select, extend_select=extend_select, ignore=ignore,
                     trust_remote_code=trust_remote_code, offline=offline, debug=debug, config=config,
                     plan=plan, timeout=timeout, quantization=quantization, check_checkpoint=check_checkpoint)


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
    timeout: float | None = None,
    quantization: str | None = None,
    check_checkpoint: bool = False,
) -> Report:
    """Lint several targets into one report; a target that fails does not stop the others.

    With no ``targets``, the ``models`` of ``config`` are linted. ``progress(message)``, if
    given, is called as each target is fetched and built. ``plan`` (one LoRA plan for every
    target) is evaluated instead of the common recipes; without it, a model's plan from the
    configuration file is. ``timeout`` is each target's time limit in seconds.
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
            timeout=_timeout(timeout, cfg),
            quantization=request, check_checkpoint=check_checkpoint,
        )
        result = _lint_guarded(where, options)
        result.target = label
        results.append(result)
    return Report(results=results, archlint_version=archlint_version(), versions=versions(), rules=codes,
                  rule_info=rule_info(rules))


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
    timeout: float | None = None  # seconds for the whole target; None: no limit
    quantization: QuantizationRequest | None = None  # --quantization
    check_checkpoint: bool = False  # --check-checkpoint: read a Hub repository's safetensors headers


def _timeout(given: float | None, cfg: Config) -> float | None:
    seconds = given if given is not None else cfg.timeout if cfg.timeout is not None else DEFAULT_TIMEOUT
    return seconds or None


def _lint_guarded(target: str, options: _Options) -> TargetResult:
    """:func:`_lint_one` within the target's time limit; whatever escapes it becomes the
    target's error (``timeout``, or ``internal`` for what archlint did not anticipate)."""
    _import_libraries(with_peft=options.plan is not None or any(r.code.startswith("LORA") for r in options.rules))
    try:
        with Deadline(options.timeout), quiet_libraries(enabled=not options.debug):
            return _lint_one(target, options)
    except DeadlineExceeded:
        if options.debug:
            raise
        error = timeout_error(target, options.timeout)
    except (Exception, SystemExit) as e:  # SystemExit: a factory calling sys.exit()
        if options.debug:
            raise
        error = internal_error(target, e)
    result = TargetResult(target)
    result.error = error
    return result


def _import_libraries(*, with_peft: bool) -> None:
    """Import what every build (and every plan evaluation) needs before the first time limit
    starts: a first import of transformers and PEFT takes seconds, and a limit measures the
    target, not the process warming up. Imported once; a failure is left to the lint to report."""
    names = ["transformers.modeling_utils", "transformers.initialization", *(["peft"] if with_peft else [])]
    for name in names:
        if name in sys.modules:
            continue
        try:
            with quiet_libraries():
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- the lint itself will say what is missing
            pass


def _silent(message: str) -> None:
    pass


def _lint_one(target: str, options: _Options) -> TargetResult:
    """One target through the pipeline: resolve -> build -> graph -> facts -> rules ->
    suppressions -> report."""
    result = TargetResult(target)
    clock = time.perf_counter()
    try:
        options.progress(f"resolving {target}")
        spec = resolve(target, trust_remote_code=options.trust_remote_code, offline=options.offline,
                       hub_timeout=options.timeout)
        result.timings["resolve"] = time.perf_counter() - clock
        options.progress(f"building {target} on the meta device")
        built = build(spec)
        result.timings["build"] = built.seconds
    except TargetError as e:
        if options.debug:
            raise
        result.error = e
        return result
    if spec.adapter and options.plan is None:
        try:
            adapter_plan = dataclasses.replace(Plan.from_file(spec.adapter), source="adapter")
            options = dataclasses.replace(options, plan=adapter_plan)
        except UsageError as e:
            result.error = TargetError("bad-adapter", f"{target}: {spec.adapter}: {e}")
            return result
    result.anchor = target_anchor(spec)
    clock = time.perf_counter()
    graph = ModuleGraph(built.module)
    result.timings["graph"] = time.perf_counter() - clock
    result.model = ModelSummary(built.class_name, built.model_type, graph.parameter_count(), len(graph), built.head,
                                built.class_reason or None)
    result.tree = collapsed_tree(graph)
    facts = Facts(graph, built, config=spec.config or getattr(built.module, "config", None), plan=options.plan,
                  quantization_request=options.quantization,
                  checkpoint_source=checkpoint_source(spec, hub=options.check_checkpoint, offline=options.offline))
    result.quantization = facts.quantization  # asked for, or shipped in the config: reported even unselected
    result.checkpoint = facts.checkpoint
    if options.plan is not None or any(r.code.startswith("LORA") for r in options.rules):
        _plans(facts, result, debug=options.debug)
    findings = _run([r for r in options.rules if not r.after_suppression], facts, result, debug=options.debug)
    ran = set(options.codes) - {e["code"] for e in result.rule_errors}  # a crashed rule's pragmas cannot be judged
    ignores = options.config.ignores_for(options.identity)
    kept, facts.suppressions = suppress(merge_findings(findings), graph, ignores, ran)
    kept += _run([r for r in options.rules if r.after_suppression], facts, result, debug=options.debug)
    result.timings.update(facts.timings)
    cfg = options.config
    if cfg.severity:
        kept = [dataclasses.replace(f, severity=cfg.severity_for(f.code, f.severity)) for f in kept]
    result.findings = merge_findings(kept)
    result.class_anchors = class_anchors(graph, result.findings)
    return result


def _run(rules: Sequence[type[Rule]], facts: Facts, result: TargetResult, *, debug: bool) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules:
        try:
            with facts.timed("rules"):  # the rules' own time; the facts they read are timed apart
                findings.extend(rule().check(facts))
        except Exception as e:  # one broken rule must not hide the others' findings
            if debug:
                raise
            result.rule_errors.append({"code": rule.code, "message": one_line(e)})
    return findings


def _plans(facts: Facts, result: TargetResult, *, debug: bool) -> None:
    """Evaluate the plan (or the common recipes) before the rules, into the result."""
    plans = facts.plans
    if plans.exception is not None:
        if debug:
            raise plans.exception
        result.rule_errors.append({"code": "PLAN", "message": plans.error})
    result.plans = [plan_summary(e) for e in plans.evaluations]


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
