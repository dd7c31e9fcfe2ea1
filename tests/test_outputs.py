"""Where reports go: several formats from one build, colour and width, the TTY-only spinner."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from support import REPO, run_cli, validate_report, validate_sarif

from archlint.outputs import ReportSpec, stdout_style
from archlint.progress import spinner

TOWERS = "fixtures/zoo/towers.py:WrappedVisionTower"


def test_several_reports_from_one_build(tmp_path, monkeypatch):
    import archlint.build
    from archlint.cli import main

    builds = []
    real_build = archlint.build.build  # the pipeline imports it from archlint.build when it lints
    monkeypatch.setattr(archlint.build, "build", lambda spec: builds.append(spec.target) or real_build(spec))
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    result = CliRunner().invoke(main, [
        TOWERS, "--format", "github",
        "--report", f"sarif:{tmp_path / 'out' / 'archlint.sarif'}", "--report", f"json:{tmp_path / 'archlint.json'}",
        "--report", f"text:{tmp_path / 'archlint.txt'}",
    ])
    assert result.exit_code == 1, result.output
    assert builds == [TOWERS]  # built once, rendered four times
    assert result.stdout.startswith("::error title=archlint LORA001")
    validate_sarif(json.loads((tmp_path / "out" / "archlint.sarif").read_text()))
    report = json.loads((tmp_path / "archlint.json").read_text())
    validate_report(report)
    assert {f["code"] for f in report["results"][0]["findings"]} == {"LORA001", "LORA004"}
    text = (tmp_path / "archlint.txt").read_text()
    assert "LORA001 linear-wrapper" in text and "\x1b[" not in text
    assert "| error | LORA001 linear-wrapper |" in (tmp_path / "summary.md").read_text()


def test_report_option_through_the_real_cli(tmp_path):
    out = run_cli(TOWERS, "--select", "LORA001", "--format", "sarif", "--report", f"json:{tmp_path / 'r.json'}")
    assert out.returncode == 1
    assert json.loads(out.stdout)["runs"][0]["results"][0]["ruleId"] == "LORA001"  # run_cli validated both
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["findings"][0]["code"] == "LORA001"
    assert out.stderr == ""  # stderr is a pipe: no spinner, no progress


@pytest.mark.parametrize("text", ["sarif", "yaml:x", "json:", ":x"])
def test_bad_report_spec_is_a_usage_error(text):
    from archlint.errors import UsageError

    with pytest.raises(UsageError, match="FORMAT:PATH"):
        ReportSpec.parse(text)


def test_colour_follows_no_color_force_color_and_the_flag():
    assert stdout_style(no_color=False, to_terminal=True, env={})[0] is True
    assert stdout_style(no_color=False, to_terminal=True, env={"NO_COLOR": "1"})[0] is False
    assert stdout_style(no_color=False, to_terminal=True, env={"NO_COLOR": ""})[0] is True  # empty: unset
    assert stdout_style(no_color=True, to_terminal=True, env={})[0] is False
    assert stdout_style(no_color=False, to_terminal=False, env={})[0] is False
    assert stdout_style(no_color=False, to_terminal=False, env={"FORCE_COLOR": "1"})[0] is True
    assert stdout_style(no_color=False, to_terminal=False, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})[0] is False


def test_width_is_columns_then_terminal_then_100():
    assert stdout_style(no_color=True, to_terminal=False, env={})[1] == 100
    assert stdout_style(no_color=True, to_terminal=False, env={"COLUMNS": "72"})[1] == 72
    assert stdout_style(no_color=True, to_terminal=True, env={"COLUMNS": "132"})[1] == 132


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_draws_only_on_a_terminal():
    tty, pipe = FakeTTY(), io.StringIO()
    with spinner(tty) as update:
        assert update is not None
        update("building gemma4 on the meta device")
    assert "building gemma4" in tty.getvalue()
    with spinner(pipe) as update:
        assert update is None
    assert pipe.getvalue() == ""
    with spinner(FakeTTY(), enabled=False) as update:  # --quiet
        assert update is None
