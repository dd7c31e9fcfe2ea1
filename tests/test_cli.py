"""The command line: target forms, selection, exit codes, formats."""

from __future__ import annotations

import json

import pytest
from support import config, run_cli

from archlint.rules import all_rules

LLAMA = config("meta-llama__Llama-3.1-8B")
GEMMA4 = config("google__gemma-4-E2B-it")


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """``run_cli`` with one result cache for this module's tests, as a user's repeated runs
    share one: the first run of a target under a rule selection lints it, the runs after it
    that change only the output options (format, --fail-on, --quiet, --tree, several targets)
    read its stored result. Where a test compares two lints, one side passes ``--no-cache``."""
    cache = str(tmp_path_factory.mktemp("cli_result_cache"))

    def run(*args: str):
        return run_cli(*args, env={"XDG_CACHE_HOME": cache})

    return run


def test_rules_lists_every_rule():
    out = run_cli("rules")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    start, end = lines[0].index("severity"), lines[0].index("origin")
    severity_column = " ".join(" ".join(line[start:end].split()) for line in lines[1:])  # wrapped cells rejoined
    noted = [rule for rule in all_rules() if rule.severity_note]
    assert noted  # some rules report below or above their default severity
    for rule in all_rules():
        assert rule.code in out.stdout and rule.name in out.stdout
    for rule in noted:  # as README's table says it
        assert f"{rule.severity} ({' '.join(rule.severity_note.split())})" in severity_column, rule.code


def test_explain_prints_the_docstring_sections():
    out = run_cli("explain", "LORA001")
    assert out.returncode == 0
    assert "# LORA001 linear-wrapper" in out.stdout
    assert "## Why is this bad" in out.stdout
    assert run_cli("explain", "linear-wrapper").stdout == out.stdout
    assert run_cli("explain", "NOPE999").returncode == 2


def test_exit_codes_follow_fail_on(cli):
    assert cli(LLAMA).returncode == 0
    assert cli(GEMMA4, "--format", "json").returncode == 1
    assert cli(GEMMA4, "--fail-on", "never", "--format", "json").returncode == 0
    assert cli(LLAMA, "--fail-on", "info", "--format", "json").returncode == 1  # NORM001 is info


def test_unknown_selector_is_a_usage_error():
    out = run_cli(LLAMA, "--select", "NOPE")
    assert out.returncode == 2
    assert "NOPE" in out.stderr


def test_select_and_ignore_by_code_and_prefix():
    report = json.loads(run_cli(GEMMA4, "--format", "json", "--select", "LORA", "--ignore", "LORA004").stdout)
    codes = {f["code"] for f in report["results"][0]["findings"]}
    assert codes and all(c.startswith("LORA") for c in codes) and "LORA004" not in codes
    assert "NORM001" not in report["rules"]


def test_json_is_byte_identical_across_runs_and_has_the_contract_shape(cli):
    # a lint (or its stored result) and a fresh lint that neither reads nor writes the cache
    first, second = cli(GEMMA4, "--format", "json"), cli(GEMMA4, "--format", "json", "--no-cache")
    assert first.stdout == second.stdout
    report = json.loads(first.stdout)
    assert report["schema_version"] == 1 and report["archlint_version"]
    # every library whose behaviour the report predicts, and which the cache key holds
    assert set(report["versions"]) == {"torch", "transformers", "peft", "huggingface_hub", "bitsandbytes", "accelerate"}
    result = report["results"][0]
    assert result["error"] is None
    assert result["model"]["class"] == "Gemma4ForConditionalGeneration"
    assert result["model"]["model_type"] == "gemma4"
    finding = result["findings"][0]
    assert set(finding) >= {"code", "name", "severity", "confidence", "message", "module_class", "pattern",
                            "paths", "count", "fix", "details"}
    assert finding["count"] == len(finding["paths"])
    assert report["summary"]["modules_by_code"]["LORA001"] == 232
    assert report["summary"]["by_code"]["LORA001"] == sum(f["code"] == "LORA001" for f in result["findings"])


def test_several_targets_make_one_report(tmp_path, cli):
    out = cli(LLAMA, GEMMA4, "--format", "json", "--output", str(tmp_path / "r.json"))
    assert out.returncode == 1 and out.stdout == ""
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["target"] for r in report["results"]] == [LLAMA, GEMMA4]


def test_config_json_path_and_folder_agree(cli):
    a = json.loads(cli(GEMMA4, "--format", "json").stdout)["results"][0]["findings"]
    b = json.loads(cli(GEMMA4 + "/config.json", "--format", "json", "--no-cache").stdout)["results"][0]["findings"]
    assert a and a == b


def test_model_type_fills_optional_towers():
    """`archlint gemma4` must build the vision and audio towers, or the wrapper problem is invisible."""
    report = json.loads(run_cli("gemma4", "--format", "json", "--select", "LORA001").stdout)
    flagged = {p for f in report["results"][0]["findings"] for p in f["paths"]}
    assert any(".vision_tower." in p for p in flagged) and any(".audio_tower." in p for p in flagged)


def test_factory_targets_file_and_module_forms():
    by_file = run_cli("fixtures/zoo/towers.py:WrappedVisionTower", "--format", "json", "--select", "LORA001")
    assert by_file.returncode == 1
    report = json.loads(by_file.stdout)
    assert report["results"][0]["model"]["class"] == "WrappedVisionTower"
    by_module = run_cli("fixtures.zoo.towers:WrappedVisionTower", "--format", "json", "--select", "LORA001")
    assert json.loads(by_module.stdout)["results"][0]["findings"] == report["results"][0]["findings"]


def test_text_output_groups_and_collapses(cli):
    out = cli(GEMMA4, "--no-color")
    assert "LORA001 linear-wrapper 17 findings at 232 modules" in out.stdout
    assert "model.vision_tower.encoder.layers.*.self_attn.q_proj ×16" in out.stdout
    assert "fix:" in out.stdout
    assert "\x1b[" not in out.stdout


def test_tree_marks_findings_on_collapsed_layers(cli):
    out = cli(GEMMA4, "--tree")
    assert "◀ LORA001" in out.stdout
    assert "×16" in out.stdout  # vision layers collapsed


def test_quiet_prints_only_findings_at_or_above_fail_on(cli):
    out = cli(LLAMA, "--quiet")
    assert out.returncode == 0 and "NORM001" not in out.stdout
