"""Helpers shared by the tests: lint a target once per session, run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
SCHEMAS = REPO / "schema"


@cache
def lint_cached(target: str, select: tuple[str, ...] | None = None, plan_json: str | None = None,
                quantization: str | None = None):
    """``archlint.lint`` once per (target, selection, plan as JSON, quantization) for the whole session."""
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


def findings(target: str, code: str | None = None):
    result = lint_cached(target).results[0]
    assert result.error is None, result.error
    return [f for f in result.findings if code is None or f.code == code]


def paths(target: str, code: str) -> set[str]:
    return {p for f in findings(target, code) for p in f.paths}


def run_cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -m archlint ARGS`` (from the repository root unless ``cwd``); every JSON/SARIF
    output is schema-checked."""
    proc = subprocess.run(
        [sys.executable, "-m", "archlint", *args],
        cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
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
    assert not errors, f"{name}: " + "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


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
