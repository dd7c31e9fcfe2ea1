"""Helpers shared by the tests: lint a target once per session, run the CLI (in this process, or
in a new one where a real process matters), validate every machine-readable report."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
SCHEMAS = REPO / "schema"


#: A folder the pytest-xdist workers of one run share (conftest sets it in the controller):
#: a lint one worker made is read by the others instead of being made again.
SHARED_LINTS = "ARCHLINT_TEST_SHARED_LINTS"


@cache
def lint_cached(target: str, select: tuple[str, ...] | None = None, plan_json: str | None = None,
                quantization: str | None = None):
    """``archlint.lint`` once per (target, selection, plan as JSON, quantization) for the whole
    run: in this process, and across the run's workers through :data:`SHARED_LINTS` (a worker
    that wants a lint another one is making waits for it instead of making it too)."""
    shared = os.environ.get(SHARED_LINTS)
    if not shared:
        return _lint(target, select, plan_json, quantization)
    import fcntl
    import hashlib
    import pickle

    key = hashlib.sha256(repr((target, select, plan_json, quantization)).encode()).hexdigest()[:32]
    stored = Path(shared) / f"{key}.pickle"
    with open(Path(shared) / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if stored.exists():
            return pickle.loads(stored.read_bytes())
        report = _lint(target, select, plan_json, quantization)
        partial = stored.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(report))
        partial.replace(stored)
        return report


def _lint(target: str, select: tuple[str, ...] | None, plan_json: str | None, quantization: str | None):
    import json

    from archlint import Plan, lint

    plan = Plan.from_mapping(json.loads(plan_json), source="flags") if plan_json else None
    cwd = os.getcwd()
    os.chdir(REPO)  # example targets are relative to the repository
    try:
        return lint(target, select=list(select) if select else None, plan=plan, quantization=quantization)
    finally:
        os.chdir(cwd)


def config(name: str) -> str:
    return str(CONFIGS / name)


@cache
def facts_cached(target: str):
    """The :class:`archlint.facts.Facts` of ``target`` (resolved, built and graphed once per
    session): the live model and graph a report no longer carries."""
    return fresh_facts(target)


def fresh_facts(target: str):
    """A new :class:`archlint.facts.Facts` of ``target`` (for tests that run forwards on it)."""
    from archlint.build import build
    from archlint.facts import Facts
    from archlint.graph import ModuleGraph
    from archlint.resolve import resolve

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        spec = resolve(target)
    finally:
        os.chdir(cwd)
    built = build(spec)
    return Facts(ModuleGraph(built.module), built, config=spec.config)


def findings(target: str, code: str | None = None):
    result = lint_cached(target).results[0]
    assert result.error is None, result.error
    return [f for f in result.findings if code is None or f.code == code]


def paths(target: str, code: str) -> set[str]:
    return {p for f in findings(target, code) for p in f.paths}


def run_cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``archlint ARGS`` run in this process by click's ``CliRunner``, from the repository root
    unless ``cwd``, with ``HF_HUB_OFFLINE=1`` unless ``env`` says otherwise (a value of ``None``
    unsets a variable). Returns what a subprocess would: exit code, stdout, stderr (with the
    traceback an uncaught exception prints). Every JSON/SARIF output is schema-checked.
    """
    from click.testing import CliRunner

    from archlint.cli import main

    env = {"HF_HUB_OFFLINE": "1", **(env or {})}
    with _like_a_fresh_process(Path(cwd), env):
        result = CliRunner().invoke(main, list(args), env=env, prog_name="archlint")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    proc = subprocess.CompletedProcess(["archlint", *args], result.exit_code, result.stdout, stderr)
    check_outputs(args, proc, cwd=Path(cwd))
    return proc


@contextlib.contextmanager
def _like_a_fresh_process(cwd: Path, env: dict):
    """What a new ``archlint`` process would have that this test process lacks or shares.

    * the working directory ``cwd``; ``sys.path`` and modules imported from ``cwd`` undone after;
    * huggingface_hub's offline switch, which it reads from the environment only at import;
    * Python's default warning filters, printed to stderr (pytest would record them instead);
    * logging handlers made earlier for the real stderr write to the runner's stderr.
    """
    import huggingface_hub.constants as hf_constants

    saved_cwd, saved_path, saved_modules = os.getcwd(), list(sys.path), set(sys.modules)
    saved_offline = hf_constants.HF_HUB_OFFLINE
    offline = env.get("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE"))
    hf_constants.HF_HUB_OFFLINE = (offline or "").upper() in hf_constants.ENV_VARS_TRUE_VALUES
    handlers = [h for h in _all_handlers() if type(h) is logging.StreamHandler and _is_stderr(h.stream)]
    streams = [h.setStream(_CurrentStderr()) for h in handlers]
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category in _DEFAULT_WARNING_FILTERS:
                warnings.simplefilter(action, category)
            warnings.showwarning = _show_warning
            yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            file = getattr(sys.modules[name], "__file__", None)
            if file and cwd != REPO and Path(file).resolve().is_relative_to(cwd.resolve()):
                del sys.modules[name]
        hf_constants.HF_HUB_OFFLINE = saved_offline
        for handler, stream in zip(handlers, streams, strict=True):
            handler.setStream(stream)


# The filters CPython installs at start-up (no -W, no PYTHONWARNINGS), most general first.
_DEFAULT_WARNING_FILTERS = (("ignore", ResourceWarning), ("ignore", ImportWarning),
                            ("ignore", PendingDeprecationWarning), ("ignore", DeprecationWarning))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """What the interpreter prints for a warning, on the stderr of the moment."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is now."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _all_handlers():
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    return [h for logger in loggers for h in logger.handlers]


def _is_stderr(stream) -> bool:
    return stream is sys.__stderr__ or stream is sys.stderr or getattr(stream, "name", None) == "<stderr>"


def run_process(*args: str, env: dict | None = None, cwd: Path = REPO,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m archlint ARGS`` in a new process, for what needs a real one (start-up,
    installed plugins, signals); ``HF_HUB_OFFLINE=1`` unless ``env`` says otherwise (a value of
    ``None`` unsets a variable). Every JSON/SARIF output is schema-checked."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "archlint", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in env.items() if v is not None},
    )
    check_outputs(args, proc, cwd=Path(cwd))
    return proc


# -- schemas: every machine-readable report the tests produce is validated -----------


@cache
def _validator(name: str):
    import jsonschema

    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _validate(name: str, doc) -> None:
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    where = ["/".join(map(str, e.absolute_path)) for e in errors[:5]]
    assert not errors, f"{name}: " + "; ".join(f"{w}: {e.message}" for w, e in zip(where, errors, strict=False))


def validate_report(doc) -> None:
    """``--format json`` output against the published schema/report.schema.json (draft 2020-12)."""
    _validate("report.schema.json", doc)


def validate_sarif(doc) -> None:
    """``--format sarif`` output against the official SARIF 2.1.0 schema (schema/README.md cites it)."""
    _validate("sarif-schema-2.1.0.json", doc)


VALIDATORS = {"json": validate_report, "sarif": validate_sarif}


def check_outputs(args: Sequence[str], proc: subprocess.CompletedProcess, *, cwd: Path) -> None:
    """Validate every JSON report and SARIF log one CLI run wrote: stdout, ``--output``, ``--report``.

    Every helper that runs ``python -m archlint`` calls this, so no JSON output of the test
    suite escapes the schema. A usage error (exit 2) writes no report.
    """
    if proc.returncode == 2:
        return
    fmt, output, reports = "text", None, []
    args = list(args)
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else ""
        if arg == "--format":
            fmt = value
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
        elif arg in ("--output", "-o"):
            output = value
        elif arg == "--report":
            reports.append(tuple(value.split(":", 1)))
    if fmt in VALIDATORS:
        text = (cwd / output).read_text(encoding="utf-8") if output else proc.stdout
        VALIDATORS[fmt](json.loads(text))
    for kind, path in reports:
        if kind in VALIDATORS:
            VALIDATORS[kind](json.loads((cwd / path).read_text(encoding="utf-8")))


def meta_model(target: str):
    """A fresh meta model of ``target`` (for handing to PEFT)."""
    from archlint.build import build
    from archlint.resolve import resolve

    return build(resolve(target)).module
