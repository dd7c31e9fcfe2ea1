"""The library face: ``lint(target) -> Report``."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, load_config
from .deadline import DEFAULT_TIMEOUT
from .errors import TargetError, UsageError, internal_error, one_line, timeout_error
from .hub import shared_answers
from .installed import PREDICTED_LIBRARIES, installed_version
from .report import ModelSummary, Report, TargetResult
from .selection import Layer, known_rules, rule_catalogue, selected_codes, validate_selectors
from .targets import target_identity

if TYPE_CHECKING:
    from .cache import ResultCache
    from .facts import Facts
    from .findings import Finding
    from .lora.plan import Plan
    from .quantize import QuantizationRequest
    from .rules import Rule

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
    cache: ResultCache | None = None,
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
    :data:`archlint.deadline.DEFAULT_TIMEOUT`; ``0`` for none). With ``cache`` (an
    :class:`archlint.cache.ResultCache`), an unchanged target is answered from it.

    Whatever the target holds, a report is returned: a failure is the result's ``error``
    (with ``debug=True`` it is raised instead).
    """
    return lint_many([target], select=select, extend_select=extend_select, ignore=ignore,
                     trust_remote_code=trust_remote_code, offline=offline, debug=debug, config=config,
                     plan=plan, timeout=timeout, quantization=quantization, check_checkpoint=check_checkpoint,
                     cache=cache)


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
    cache: ResultCache | None = None,
) -> Report:
    """Lint several targets into one report; a target that fails does not stop the others.

    With no ``targets``, the ``models`` of ``config`` are linted. ``progress(message)``, if
    given, is called as each target is fetched and built. ``plan`` (one LoRA plan for every
    target) is evaluated instead of the common recipes; without it, a model's plan from the
    configuration file is. ``timeout`` is each target's time limit in seconds. With
    ``cache``, each target whose inputs are unchanged is read from it (without importing
    torch) and each target linted afresh is stored in it.
    """
    stored = cache.load_catalogue() if cache is not None else None
    with known_rules(stored.names if stored else None):  # selection without importing the rules
        report = _lint_many(targets, select, extend_select, ignore, trust_remote_code, offline, debug, config,
                            progress, plan, timeout, quantization, check_checkpoint, cache, stored)
    if cache is not None and stored is None:
        from .rules import plugin_problems

        cache.save_catalogue(rule_catalogue(), _rule_info(tuple(r.code for r in _all_rules())), plugin_problems())
    elif stored is not None and not _rules_discovered():
        # every result came from the cache: say again what discovering the rules would have said
        for problem in stored.plugin_problems:
            logging.getLogger("archlint.plugins").warning("%s", problem)
    return report


def _rules_discovered() -> bool:
    rules = sys.modules.get("archlint.rules")
    return rules is not None and rules.rules_discovered()


def _lint_many(targets, select, extend_select, ignore, trust_remote_code, offline, debug, config, progress, plan,
               timeout, quantization, check_checkpoint, cache, stored) -> Report:
    cfg = config if isinstance(config, Config) else load_config(config) if config is not None else Config()
    validate_selectors([*(select or ()), *(extend_select or ()), *(ignore or ())])
    codes = selected_codes([
        Layer(cfg.select, cfg.extend_select, cfg.ignore),
        Layer(select or None, extend_select or (), ignore or ()),
    ])
    if quantization:
        from .quantize import QuantizationRequest

        request = QuantizationRequest.parse(quantization)
    else:
        request = None
    results = []
    for label, where, identity in _targets(targets, cfg):
        entry = cfg.model_entry(identity)
        options = _Options(
            codes=tuple(codes), offline=offline, debug=debug, config=cfg, identity=identity,
            trust_remote_code=trust_remote_code or bool(entry and entry.trust_remote_code),
            progress=progress or _silent,
            plan=plan if plan is not None else (entry.plan if entry else None),
            timeout=_timeout(timeout, cfg),
            quantization=request, check_checkpoint=check_checkpoint,
        )
        result = _lint_guarded(where, options) if cache is None else _lint_cached(where, options, cache)
        result.target = label
        results.append(result)
    if stored is not None and "archlint.rules.base" not in sys.modules:
        info = {c: i for c, i in stored.info.items() if c in codes}  # every result came from the cache
    else:
        info = _rule_info(tuple(codes))
    return Report(results=results, archlint_version=archlint_version(), versions=versions(), rules=codes,
                  rule_info=info)


@cache
def _all_rules() -> tuple[type[Rule], ...]:
    from .rules import all_rules

    return all_rules()


def _selected_rules(codes: Sequence[str]) -> list[type[Rule]]:
    return [r for r in _all_rules() if r.code in codes]


def _rule_info(codes: tuple[str, ...]) -> dict:
    from .summarise import rule_info

    return rule_info(_selected_rules(codes))


def _lint_cached(where: str, options: _Options, cache: ResultCache) -> TargetResult:
    """The stored result when ``where``'s inputs are unchanged; else a lint, then stored.
    The look-up and the lint ask the Hub once between them."""
    with shared_answers():
        return _lint_or_load(where, options, cache)


def _lint_or_load(where: str, options: _Options, cache: ResultCache) -> TargetResult:
    clock = time.perf_counter()
    key = cache.target_key(
        where, identity=options.identity, codes=options.codes, severity=options.config.severity,
        ignores=options.config.ignores_for(options.identity), plan=options.plan, offline=options.offline,
        options={name: getattr(options, name) for name in RESULT_OPTIONS}, hub_timeout=options.timeout,
    )
    if key is not None:
        stored = cache.load(key)
        if stored is not None:
            stored.timings["cache"] = time.perf_counter() - clock
            return stored
    built_files: dict[str, str] = {}

    def record(spec, built) -> None:
        if spec.kind == "factory":
            from .cache import built_sources

            built_files.update(built_sources(where, built.module))

    result = _lint_guarded(where, options, on_built=record)
    if key is not None and result.cacheable:
        cache.save(key, result, built_files)
    return result


def _targets(targets: Sequence[str] | None, cfg: Config) -> list[tuple[str, str, str]]:
    """``(label, what resolve() gets, identity)``: a command-line target resolves as typed
    (relative to the current directory); a configured model through its file's directory."""
    if targets:
        return [(t, t, target_identity(t, Path.cwd())) for t in targets]
    if not cfg.models:
        where = f"{cfg.file} declares no `models`" if cfg.file else "no configuration file declares `models`"
        raise UsageError(f"no target given and {where}; name a target or add `models = [...]` to [tool.archlint]")
    return [(m.target, m.location, m.location) for m in cfg.models]


#: ``_Options`` fields that change a target's result, and so the key of its cache entry.
RESULT_OPTIONS = ("trust_remote_code", "quantization", "check_checkpoint")


@dataclass(frozen=True)
class _Options:
    codes: tuple[str, ...]
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


def _lint_guarded(target: str, options: _Options, on_built: Callable | None = None) -> TargetResult:
    """:func:`_lint_one` within the target's time limit; whatever escapes it becomes the
    target's error (``timeout``, or ``internal`` for what archlint did not anticipate)."""
    from .deadline import Deadline, DeadlineExceeded
    from .quiet import quiet_libraries

    _import_libraries(with_peft=options.plan is not None or any(c.startswith("LORA") for c in options.codes))
    try:
        with Deadline(options.timeout), quiet_libraries(enabled=not options.debug):
            return _lint_one(target, options, on_built)
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
    from .lora.unused_bitsandbytes import unused_bitsandbytes_hidden
    from .quiet import quiet_libraries

    names = ["transformers.modeling_utils", "transformers.initialization", *(["peft"] if with_peft else [])]
    for name in names:
        if name in sys.modules:
            continue
        try:
            with quiet_libraries(), unused_bitsandbytes_hidden():
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- the lint itself will say what is missing
            pass
    _freeze_once()


@cache
def _freeze_once() -> None:
    """Move what the imports left alive out of the cyclic garbage collector's view, once per
    process (``gc.freeze``). torch, transformers and PEFT keep a few hundred thousand objects
    alive for good, and every full collection during a lint walks all of them: the PEFT runs,
    fake training steps and traces allocate enough to trigger many (on Gemma-4 E2B a cold
    lint spent about 1.5 s of CPU there). Frozen objects are still freed by reference
    counting; what changes is only that cycles among them are never collected, and these
    are module-level objects that live as long as the process anyway."""
    gc.freeze()


def _silent(message: str) -> None:
    pass


def _lint_one(target: str, options: _Options, on_built: Callable | None = None) -> TargetResult:
    """One target through the pipeline: resolve -> build -> graph -> facts -> rules ->
    suppressions -> report."""
    from .anchors import class_anchors, target_anchor
    from .build import build
    from .checkpoint import checkpoint_source
    from .facts import Facts
    from .facts.ahead import start as start_worker
    from .findings import merge_findings
    from .graph import ModuleGraph
    from .lora.plan import Plan
    from .module_tree import collapsed_tree
    from .resolve import resolve
    from .suppress import suppress

    rules = _selected_rules(options.codes)
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
    if on_built is not None:
        on_built(spec, built)
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
    config = built.config or spec.config or getattr(built.module, "config", None)
    facts = Facts(graph, built, config=config, plan=options.plan,
                  quantization_request=options.quantization,
                  checkpoint_source=checkpoint_source(spec, hub=options.check_checkpoint, offline=options.offline))
    with_plans = options.plan is not None or any(r.code.startswith("LORA") for r in rules)
    facts.worker = start_worker(facts, plans=with_plans)  # the costliest oracles, ahead on the second core
    try:
        result.checkpoint = facts.checkpoint
        # what the worker computes ahead is read as late as possible (Rule.reads_ahead)
        before = sorted((r for r in rules if not r.after_suppression), key=_ahead_rank)
        findings = _run([r for r in before if not r.reads_ahead], facts, result, debug=options.debug)
        if with_plans:
            _plans(facts, result, debug=options.debug)
        findings += _run([r for r in before if r.reads_ahead], facts, result, debug=options.debug)
        order = {r.code: i for i, r in enumerate(rules)}
        result.rule_errors.sort(key=lambda e: order.get(e["code"], -1))  # in the rules' order, whenever each ran
        ran = set(options.codes) - {e["code"] for e in result.rule_errors}  # a crashed rule's pragmas cannot be judged
        ignores = options.config.ignores_for(options.identity)
        kept, facts.suppressions = suppress(merge_findings(findings), graph, ignores, ran)
        kept += _run([r for r in rules if r.after_suppression], facts, result, debug=options.debug)
        result.quantization = facts.quantization  # asked for, or shipped in the config: reported even unselected
    finally:
        if facts.worker is not None:
            facts.worker.close()
            facts.timings["worker"] = facts.worker.cpu_seconds  # the child's CPU, beside this process's phases
    result.timings.update(facts.timings)
    cfg = options.config
    if cfg.severity:
        kept = [dataclasses.replace(f, severity=cfg.severity_for(f.code, f.severity)) for f in kept]
    result.findings = merge_findings(kept)
    result.class_anchors = class_anchors(graph, result.findings)
    return result


def _ahead_rank(rule: type[Rule]) -> int:
    """Rules reading no fact computed ahead first, then the plan rules, then the quantization rules."""
    return 0 if not rule.reads_ahead else 2 if "quantization" in rule.reads_ahead else 1


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
    from .summarise import plan_summary

    plans = facts.plans
    if plans.exception is not None:
        if debug:
            raise plans.exception
        result.rule_errors.append({"code": "PLAN", "message": plans.error})
    result.plans = [plan_summary(e) for e in plans.evaluations]


def archlint_version() -> str:
    return installed_version("archlint") or "0+unknown"


def versions() -> dict[str, str | None]:
    """The versions of the libraries whose behaviour the report predicts."""
    return {name: installed_version(name) for name in PREDICTED_LIBRARIES}
