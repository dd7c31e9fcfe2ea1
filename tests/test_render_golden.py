"""Every output format, rendered from one fixed report and compared with tests/golden/.

The report lints, with four fixed rules, three targets from the repository root: a local Python model (its
classes are defined in the repository, so SARIF/annotations point at the class lines),
a real config.json, and a path that does not exist (a failed target). Versions are
replaced by fixed strings and timings are never rendered, so the files only change when
the output format or the findings change.

Regenerate after an intended change, then review the diff:

    ARCHLINT_UPDATE_GOLDENS=1 python -m pytest tests/test_render_golden.py
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from support import REPO

from archlint.render import RenderOptions, render

GOLDEN = REPO / "tests" / "golden"
# A fixed selection: the goldens must not change when rules are added (or a plugin is installed).
SELECT = ["LORA001", "LORA004", "NORM001", "ATTN001"]
TARGETS = ["fixtures/zoo/towers.py:WrappedVisionTower", "fixtures/configs/meta-llama__Llama-3.1-8B", "./no/such/model"]
UPDATE = os.environ.get("ARCHLINT_UPDATE_GOLDENS") == "1"
FILES = {"text": "report.txt", "json": "report.json", "sarif": "report.sarif", "github": "report.github.txt"}


@pytest.fixture(scope="module")
def report():
    from archlint import lint_many

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        linted = lint_many(TARGETS, select=SELECT)
    finally:
        os.chdir(cwd)
    return dataclasses.replace(
        linted, archlint_version="0.0.0+golden", versions=dict.fromkeys(linted.versions, "X.Y.Z"))


@pytest.mark.parametrize("fmt", FILES)
def test_golden(report, fmt):
    options = RenderOptions(color=False, width=100, root=str(REPO))
    out = render(report, fmt, options)
    path = GOLDEN / FILES[fmt]
    if UPDATE:
        path.write_text(out, encoding="utf-8")
    assert path.is_file(), f"{path.name} is missing; regenerate with ARCHLINT_UPDATE_GOLDENS=1"
    assert out == path.read_text(encoding="utf-8"), (
        f"{path.name} differs; if the change is intended, "
        "regenerate with ARCHLINT_UPDATE_GOLDENS=1 and review the diff")


def test_golden_step_summary(report):
    from archlint.render.github import step_summary

    path = GOLDEN / "report.step-summary.md"
    out = step_summary(report)
    if UPDATE:
        path.write_text(out, encoding="utf-8")
    assert out == path.read_text(encoding="utf-8")


def test_text_colour_is_only_ansi_when_asked(report):
    plain = render(report, "text", RenderOptions(color=False, width=100))
    coloured = render(report, "text", RenderOptions(color=True, width=100))
    assert "\x1b[" not in plain and "\x1b[" in coloured
