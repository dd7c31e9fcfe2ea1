"""The command line as a user meets it: the root command, text for a terminal, error lines,
the targets people type. In-process through click's CliRunner."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from support import REPO, config, lint_cached

from archlint.cli import main
from archlint.render import RenderOptions, render
from archlint.render.text import split_alternatives

LLAMA = config("meta-llama__Llama-3.1-8B")
GEMMA4 = config("google__gemma-4-E2B-it")
TOWERS = "fixtures/zoo/towers.py:WrappedVisionTower"


def run(*args: str, columns: int = 100, **env: str):
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns), "HF_HUB_OFFLINE": "1",
                                                         "NO_COLOR": "1", **env}, catch_exceptions=False)
    finally:
        os.chdir(cwd)


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# -- 1. the lint is the root command ------------------------------------------------------


def test_help_lists_every_lint_option_and_the_subcommands():
    out = run("--help")
    assert out.exit_code == 0
    for option in ("--format", "--select", "--target-modules", "--fail-on", "--quiet", "--offline", "--tree"):
        assert option in out.stdout, option
    assert "Usage: archlint TARGET... [OPTIONS]" in out.stdout
    commands = out.stdout.split("Commands:")[1]
    assert "rules" in commands and "explain" in commands
    assert "html" in out.stdout  # the format choice


def test_usage_errors_print_the_root_usage():
    out = run(LLAMA, "--format", "nope")
    assert out.exit_code == 2
    assert "Usage: archlint TARGET... [OPTIONS]" in out.stderr
    assert "archlint check" not in out.stderr


def test_subcommands_and_the_old_check_spelling_still_work():
    assert "LORA001" in run("rules").stdout
    assert "# LORA001 linear-wrapper" in run("explain", "LORA001").stdout
    assert run("check", "--help").stdout == run("--help").stdout


# -- 2. text for a terminal ---------------------------------------------------------------


@pytest.mark.parametrize("width", [100, 60])
def test_no_text_line_is_wider_than_the_width(width):
    """Widths in terminal cells: ``x̂`` is two code points in one cell."""
    report = lint_cached(GEMMA4)
    for tree in (False, True):
        text = render(report, "text", RenderOptions(width=width, tree=tree))
        wide = [line for line in text.splitlines() if cell_len(line) > width]
        assert not wide, f"{len(wide)} lines wider than {width}: {wide[:3]}"
        assert len(text.splitlines()) > 40


def test_columns_reaches_the_text_report():
    out = run(TOWERS, "--select", "LORA001,LORA004", columns=60)
    assert out.exit_code == 1
    assert max(cell_len(line) for line in out.stdout.splitlines()) <= 60
    wrapped = [line for line in out.stdout.splitlines() if line.startswith("                  r\"")]
    assert wrapped, "a regex longer than the width is split into r\"...\" pieces"


def test_long_regex_splits_at_alternatives_and_joins_back():
    regex = (r"model\.language_model\.layers\.\d+\.mlp\.(?:down_proj|gate_proj|up_proj)"
             r"|model\.language_model\.layers\.\d+\.self_attn\.(?:k_proj|o_proj|q_proj|v_proj)")
    for room in (30, 50, 80):
        pieces = split_alternatives(regex, room)
        assert "".join(pieces) == regex
        assert all(p.startswith("|") for p in pieces[1:])
        assert all(len(p) <= room or "|" not in p[1:] for p in pieces)  # too long only where no | is left
    assert all(len(p) <= 80 for p in split_alternatives(regex, 80))
    assert split_alternatives(regex, 200) == [regex]


def test_a_long_regex_is_printed_once_per_target():
    text = render(lint_cached(GEMMA4), "text", RenderOptions(width=100))
    assert text.count(r'r"model\.language_model\.layers\.\d+\.mlp\.(?:down_proj|gate_proj|up_proj)"') == 2
    assert "<the regex of the LORA001 fix above>" in text
    report = json.loads(render(lint_cached(GEMMA4), "json", RenderOptions()))
    fixes = [f["fix"]["detail"] for f in report["results"][0]["findings"] if f["code"] == "LORA004" and f["fix"]]
    assert fixes and r'r"model\.language_model' in fixes[0]  # whole in JSON


def test_order_is_header_plan_then_errors_warnings_infos():
    lines = render(lint_cached(GEMMA4), "text", RenderOptions(width=100)).splitlines()
    assert lines[0].endswith("google__gemma-4-E2B-it")
    assert "LoRA recipes" in "\n".join(lines[:4])
    severities = [m[1] for line in lines if (m := re.match(r"^  (error|warning|info) +[A-Z]+\d{3} ", line))]
    rank = {"error": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=rank.__getitem__) and len(set(severities)) == 3


def test_plan_verdict_comes_within_the_first_lines_of_its_target():
    out = run(GEMMA4, "--target-modules", "q_proj,v_proj", "--select", "LORA")
    lines = out.stdout.splitlines()
    assert any(line.startswith("  LoRA plan (flags): error") for line in lines[:4]), lines[:6]
    assert "LoRA recipes" not in out.stdout


def test_quiet_keeps_every_target_header():
    out = run(LLAMA, TOWERS, "--quiet", "--select", "LORA001,NORM001")
    assert out.exit_code == 1
    assert LLAMA in out.stdout and TOWERS in out.stdout
    assert "NORM001" not in out.stdout  # info, below --fail-on
    assert "LORA001" in out.stdout


def test_header_says_which_class_was_built_and_why():
    out = run("mllama", "--format", "json", "--select", "DIST001")
    model = json.loads(out.stdout)["results"][0]["model"]
    assert model["class"] == "MllamaForConditionalGeneration"
    assert "image-text-to-text" in model["class_reason"]
    assert json.loads(out.stdout)["results"][0]["findings"] == []  # no DIST001 from a missing vision tower
    gemma = json.loads(run("gemma4", "--format", "json", "--select", "DIST001").stdout)["results"][0]["model"]
    assert gemma["class"] == "Gemma4ForConditionalGeneration" and "image-text-to-text" in gemma["class_reason"]


# -- 3. errors: one line on stderr, the target once ----------------------------------------


def test_a_failed_target_is_one_stderr_line_naming_it_once():
    out = run("./no/such/dir", LLAMA, "--select", "NORM001")
    assert out.exit_code == 3
    lines = stderr_lines(out)
    assert len(lines) == 1 and lines[0].startswith("archlint: error: ./no/such/dir: ")
    assert lines[0].count("./no/such/dir") == 1
    assert "no such file" not in out.stdout  # the cause is on stderr only
    assert "./no/such/dir" in out.stdout and "not analysed" in out.stdout


# -- 4. targets people type ----------------------------------------------------------------


def test_a_weight_file_or_index_lints_its_folder(tmp_path):
    (tmp_path / "config.json").write_text((REPO / LLAMA / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    for name in ("model.safetensors", "model.safetensors.index.json"):
        out = run(str(tmp_path / name), "--format", "json", "--select", "NORM001")
        result = json.loads(out.stdout)["results"][0]
        assert result["error"] is None and result["model"]["class"] == "LlamaForCausalLM", out.stderr


def test_a_peft_adapter_lints_its_base_model_with_the_adapter_as_plan(tmp_path):
    adapter = tmp_path / "my-lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": str(REPO / GEMMA4), "r": 8,
        "target_modules": ["q_proj", "v_proj"]}))
    for target in (adapter, adapter / "adapter_config.json"):
        out = run(str(target), "--select", "LORA001")
        assert out.exit_code == 1, out.stderr
        assert "LoRA plan (adapter): error" in "\n".join(out.stdout.splitlines()[:4])
        assert "Gemma4ForConditionalGeneration" in out.stdout


def test_a_folder_of_python_files_names_the_factory_form(tmp_path):
    (tmp_path / "mymodel.py").write_text(
        "import torch\nfrom torch import nn\n\nclass Block(nn.Module):\n    pass\n\n"
        "class Net(Block):\n    pass\n\nclass Helper:\n    pass\n\nraise SystemExit('never imported')\n")
    out = run(str(tmp_path))
    assert out.exit_code == 3
    (line,) = stderr_lines(out)
    assert f"{tmp_path}/mymodel.py:Net" in line and f"{tmp_path}/mymodel.py:Block" in line
    assert "Helper" not in line and "FILE.py:NAME" in line


def test_an_unreachable_hub_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    start = time.monotonic()
    out = run("some-org/some-model", HF_HUB_OFFLINE="")
    assert time.monotonic() - start < 10
    assert out.exit_code == 3
    (line,) = stderr_lines(out)
    assert "--offline" in line and "archlint ./FOLDER" in line
    assert line.count("some-org/some-model") == 1


# -- 5. one unit ---------------------------------------------------------------------------


def test_text_and_json_count_findings_the_same_way():
    report = lint_cached(GEMMA4)
    doc = json.loads(render(report, "json", RenderOptions()))
    summary = doc["summary"]
    text = render(report, "text", RenderOptions(width=200))
    assert f"{summary['findings']} findings ({summary['by_severity']['error']} error" in text
    assert "a finding is one rule at one module pattern" in text and summary["unit"].startswith("a finding is one rule")
    assert sum(summary["by_code"].values()) == summary["findings"]
    assert sum(summary["modules_by_code"].values()) == sum(f["count"] for f in doc["results"][0]["findings"])


# -- 6. every warning actionable -------------------------------------------------------------


def test_messages_speak_of_the_users_plan():
    out = run(GEMMA4, "--target-modules", "q_proj,v_proj", "--select", "LORA001", columns=200)
    assert "your LoRA plan (flags) reaches it" in out.stdout
    assert "recipe" not in out.stdout.split("LORA001", 1)[1]


def test_kv_shared_layers_are_not_missing_projections():
    findings = [f for f in lint_cached(GEMMA4).results[0].findings if f.code == "LORA008"]
    assert findings and all(str(f.severity) == "info" for f in findings)
    note = "reuse an earlier layer's K/V (num_kv_shared_layers=20); nothing to change"
    assert all(note in f.message for f in findings)


def test_every_warning_or_error_has_a_fix_or_says_why_not():
    for target in (GEMMA4, LLAMA):
        for f in lint_cached(target).results[0].findings:
            if str(f.severity) != "info":
                assert f.fix is not None or "nothing to change" in f.message, (f.code, f.message)


def test_a_float32_model_is_described_in_its_own_dtype():
    report = lint_cached("fixtures/zoo/norms.py:OffsetRmsNormModel", ("NORM001",))
    message = report.results[0].findings[0].message
    assert "in this float32 model" in message and "cast to bfloat16" not in message
