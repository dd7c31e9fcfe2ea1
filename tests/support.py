"""Helpers shared by the tests: lint a target once per session, run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"


@cache
def lint_cached(target: str, select: tuple[str, ...] | None = None, plan_json: str | None = None):
    """``archlint.lint`` once per (target, selection, plan as JSON) for the whole session."""
    import json

    from archlint import Plan, lint

    plan = Plan.from_mapping(json.loads(plan_json), source="flags") if plan_json else None
    cwd = os.getcwd()
    os.chdir(REPO)  # example targets are relative to the repository
    try:
        return lint(target, select=list(select) if select else None, plan=plan)
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


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archlint", *args],
        cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def meta_model(target: str):
    """A fresh meta model of ``target`` (for handing to PEFT)."""
    from archlint.build import build
    from archlint.resolve import resolve

    return build(resolve(target)).module
