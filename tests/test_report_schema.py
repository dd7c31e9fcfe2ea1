"""schema/report.schema.json: the published shape of ``--format json``, and the checks that use it."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
from support import REPO, check_outputs, lint_cached, validate_report

from archlint.render import RenderOptions, render

PLAN = {
    "source": "recipe:seven-names", "verdict": "error",
    "error": {"type": "ValueError", "message": "Target module Gemma4ClippableLinear is not supported",
              "stage": "inject", "module": None},
    "checked": [],
    "entries": [{"entry": "q_proj", "matches": 63, "classes": ["Gemma4ClippableLinear", "Linear"],
                 "layers_reached": 35, "layers_total": 35}],
    "modules": ["model.language_model.layers.0.self_attn.q_proj"], "parameters": [],
    "trainable_parameters": 0, "peft_version": "0.21.2",
}


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(render(lint_cached("fixtures/zoo/towers.py:WrappedVisionTower"), "json", RenderOptions()))


def test_real_report_validates_and_so_do_the_announced_extensions(report):
    validate_report(report)
    extended = copy.deepcopy(report)
    extended["results"][0]["plans"] = [PLAN, {**PLAN, "source": "flags", "verdict": "ok", "error": None,
                                              "peft_version": None}]
    extended["results"][0]["timings"] = {"resolve": 0.5, "probe": 0.01}
    extended["results"][0]["findings"][0]["details"] = {"anything": [1, {"goes": None}]}
    extended["baseline"] = {"file": "baseline.json", "matched": 2,
                            "stale": [{"code": "LORA001", "model": "m", "pattern": "a.*.b", "name": "linear-wrapper"}]}
    extended["new_feature"] = {"anything": True}  # the top level is open to new features
    validate_report(extended)


@pytest.mark.parametrize("break_it", [
    lambda r: r["results"][0]["findings"][0].update(typo_field=1),
    lambda r: r["results"][0]["findings"][0].update(severity="fatal"),
    lambda r: r["results"][0]["findings"][0].pop("paths"),
    lambda r: r["results"][0].update(plans=[{**PLAN, "source": "yaml"}]),
    lambda r: r["results"][0].update(error={"kind": "not-found"}),
    lambda r: r["summary"]["by_severity"].update(fatal=0),
    lambda r: r.update(schema_version=2),
    lambda r: r.update(baseline={"path": "baseline.json"}),
], ids=["unknown-finding-key", "bad-severity", "missing-paths", "bad-plan-source", "error-without-message",
        "unknown-severity-count", "schema-version", "baseline-shape"])
def test_schema_rejects_what_is_not_the_contract(report, break_it):
    broken = copy.deepcopy(report)
    break_it(broken)
    with pytest.raises(AssertionError, match="report.schema.json"):
        validate_report(broken)


def test_cli_output_checks_catch_an_invalid_report(report, tmp_path):
    bad = copy.deepcopy(report)
    bad["results"][0]["findings"][0]["extra"] = True
    proc = subprocess.CompletedProcess([], 1, stdout=json.dumps(bad), stderr="")
    with pytest.raises(AssertionError):
        check_outputs(["x", "--format", "json"], proc, cwd=REPO)
    (tmp_path / "r.json").write_text(json.dumps(bad))
    with pytest.raises(AssertionError):
        check_outputs(["x", "--report", f"json:{tmp_path / 'r.json'}"], subprocess.CompletedProcess([], 0, "", ""),
                      cwd=REPO)
    check_outputs(["x", "--format", "json"], subprocess.CompletedProcess([], 0, json.dumps(report), ""), cwd=REPO)
