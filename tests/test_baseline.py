"""Baselines: write today's findings, re-run clean, then see new findings and stale entries."""

from __future__ import annotations

import json
import re

import pytest
from support import run_cli

from archlint import lint
from archlint.baseline import Entry, apply_baseline, load_baseline, write_baseline
from archlint.errors import UsageError

MODEL = '''\
from torch import nn


class Clamped(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.linear = nn.Linear(d, d)

    def forward(self, x):
        return self.linear(x).clamp(-1, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"q_proj": Clamped(), "v_proj": nn.Linear(4, 4)}) for _ in range(3))
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return x
'''


def cli(cwd, *args):
    return run_cli(*args, cwd=cwd)


def test_baseline_round_trip_through_the_command_line(tmp_path):
    (tmp_path / "net.py").write_text(MODEL)
    (tmp_path / "archlint.toml").write_text('models = ["net.py:Net"]\nselect = ["LORA001"]\n')
    out = cli(tmp_path, "--write-baseline", "baseline.json")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "baseline.json").read_text()
    assert text == (
        '{\n  "archlint_baseline": 1,\n  "findings": [\n'
        '    {"code": "LORA001", "model": "net.py:Net", "pattern": "layers.*.q_proj", "name": "linear-wrapper"}\n'
        "  ]\n}\n"
    )

    again = cli(tmp_path, "--baseline", "baseline.json", "--format", "json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["results"][0]["findings"] == []
    assert report["baseline"] == {"file": "baseline.json", "matched": 1, "stale": []}

    # q_proj becomes plain and head becomes a wrapper: one new finding, one stale entry (the new
    # finding is info -- no common recipe names `head` -- so it fails the run at --fail-on info)
    (tmp_path / "net.py").write_text(MODEL.replace('"q_proj": Clamped()', '"q_proj": nn.Linear(4, 4)')
                                     .replace("self.head = nn.Linear(4, 4)", "self.head = Clamped()"))
    changed = cli(tmp_path, "--baseline", "baseline.json", "--fail-on", "info")
    assert changed.returncode == 1
    assert "LORA001" in changed.stdout and re.search(r"^\s+head\b.*Clamped", changed.stdout, re.M)
    assert "layers.*.q_proj" not in changed.stdout
    assert "stale baseline entry (no longer found): LORA001 net.py:Net layers.*.q_proj" in changed.stderr


def test_baseline_keys_ignore_messages_and_layer_counts(tmp_path):
    file = tmp_path / "net.py"
    file.write_text(MODEL)
    report = lint(f"{file}:Net", select=["LORA001"])
    write_baseline(report, tmp_path / "b.json")
    deeper = tmp_path / "net2.py"
    deeper.write_text(MODEL.replace("range(3)", "range(7)"))
    report2 = lint(f"{deeper}:Net", select=["LORA001"])
    report2.results[0].target = report.results[0].target  # the same model, now 7 layers deep
    outcome = apply_baseline(report2, load_baseline(tmp_path / "b.json"), "b.json")
    assert report2.findings == [] and outcome.matched == 1 and outcome.stale == ()


def test_stale_entries_only_for_linted_models_and_selected_codes():
    from archlint.report import Report, TargetResult

    report = Report(results=[TargetResult("a")], archlint_version="0", versions={}, rules=["LORA001"])
    baseline = {Entry("LORA001", "a", "x"), Entry("LORA001", "b", "x"), Entry("NORM001", "a", "y")}
    assert apply_baseline(report, baseline, "f").stale == (Entry("LORA001", "a", "x"),)


@pytest.mark.parametrize("content", [
    "not json", '{"findings": []}', '{"archlint_baseline": 1, "findings": [{"code": 1}]}'])
def test_a_malformed_baseline_is_a_usage_error_naming_the_file(tmp_path, content):
    (tmp_path / "b.json").write_text(content)
    with pytest.raises(UsageError, match="b.json"):
        load_baseline(tmp_path / "b.json")
