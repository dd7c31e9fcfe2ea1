"""Targets that cannot be resolved or built: exit 3, one stderr line, no traceback.

Every case runs the CLI (in this process, as ``support.run_cli`` does), in text and in
JSON format. With ``--format json`` stdout must still be one valid JSON report whose
``results[i].error`` carries a stable ``kind``; other targets still run.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from support import run_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
GOOD_CONFIG = "fixtures/configs/meta-llama__Llama-3.1-8B"


def run_archlint(*args: str) -> subprocess.CompletedProcess:
    # The width is pinned (pytest-xdist sets COLUMNS=80) and wide enough for the target, so
    # the text report must print it unbroken; only a name wider than the width is folded.
    columns = str(max(100, len(args[0]) + 2)) if args else "100"
    # every JSON report is checked against schema/report.schema.json
    return run_cli(*args, env={"NO_COLOR": "1", "COLUMNS": columns})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- the error cases --------------------------------------------------------------
# Each builder takes tmp_path and returns (target, expected error kind).


def missing_path(tmp_path: Path):
    return "./no/such/dir", "not-found"


def malformed_config(tmp_path: Path):
    write(tmp_path / "bad" / "config.json", '{"model_type": "llama", "hidden_size": 4096,,, ')
    return str(tmp_path / "bad"), "malformed-config"


def unknown_model_type(tmp_path: Path):
    write(tmp_path / "unknown" / "config.json", json.dumps({"model_type": "not_a_model_xyz", "hidden_size": 64}))
    return str(tmp_path / "unknown" / "config.json"), "unknown-model-type"


def remote_code_without_flag(tmp_path: Path):
    folder = tmp_path / "remote"
    write(folder / "config.json", json.dumps({
        "model_type": "archlint_custom_xyz",
        "architectures": ["CustomForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
        },
        "hidden_size": 64,
    }))
    # If this code ever ran, the test would see the marker file: it must not run.
    marker = tmp_path / "REMOTE_CODE_RAN"
    write(folder / "configuration_custom.py", f"""
        open({str(marker)!r}, "w").close()
        from transformers import PretrainedConfig
        class CustomConfig(PretrainedConfig):
            model_type = "archlint_custom_xyz"
    """)
    return str(folder), "remote-code"


def unknown_bare_word(tmp_path: Path):
    return "notamodeltype", "unknown-target"


def factory_raises(tmp_path: Path):
    path = write(tmp_path / "model.py", """
        def build():
            raise RuntimeError("boom")
    """)
    return f"{path}:build", "factory-failed"


def factory_returns_non_module(tmp_path: Path):
    path = write(tmp_path / "model.py", """
        def build():
            return {"not": "a module"}
    """)
    return f"{path}:build", "factory-not-module"


def factory_attribute_missing(tmp_path: Path):
    path = write(tmp_path / "model.py", """
        def build():
            raise AssertionError("never called")
    """)
    return f"{path}:does_not_exist", "factory-missing"


def build_fails_on_meta(tmp_path: Path):
    # The tensor is put on meta *explicitly*, so build.py's fallback (which only moves
    # small factory tensors made without a device to the CPU) cannot rescue .item().
    path = write(tmp_path / "model.py", """
        import torch
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                n = int(torch.empty(10, device="meta").sum().item())
                self.proj = nn.Linear(n, n)

        def build():
            return Model()
    """)
    return f"{path}:build", "build-failed"


CASES = [
    missing_path,
    malformed_config,
    unknown_model_type,
    remote_code_without_flag,
    unknown_bare_word,
    factory_raises,
    factory_returns_non_module,
    factory_attribute_missing,
    build_fails_on_meta,
]


def assert_one_error_line(stderr: str, target: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one stderr line, got:\n{stderr}"
    assert lines[0].startswith("archlint: error:"), lines[0]
    assert target in lines[0], f"the error line does not name {target!r}: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_target_error(case, fmt, tmp_path):
    target, kind = case(tmp_path)
    proc = run_archlint(target, "--format", fmt)

    assert proc.returncode == 3, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert_one_error_line(proc.stderr, target)
    assert not (tmp_path / "REMOTE_CODE_RAN").exists(), "remote code ran without --trust-remote-code"

    if fmt == "json":
        report = json.loads(proc.stdout)
        assert len(report["results"]) == 1
        result = report["results"][0]
        assert result["target"] == target
        assert result["model"] is None
        assert result["findings"] == []
        error = result["error"]
        assert set(error) == {"kind", "message"}
        assert error["kind"] == kind, error
        assert isinstance(error["message"], str) and target in error["message"]
        assert "\n" not in error["message"]
        assert report["summary"]["failed_targets"] == 1
    else:
        assert target in proc.stdout  # the text report still lists the failed target


def test_one_bad_target_does_not_stop_the_others():
    missing = "./no/such/dir"
    proc = run_archlint(GOOD_CONFIG, missing, "--format", "json")

    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert_one_error_line(proc.stderr, missing)

    report = json.loads(proc.stdout)
    assert [r["target"] for r in report["results"]] == [GOOD_CONFIG, missing]
    good, bad = report["results"]
    assert good["error"] is None
    assert good["model"]["class"] == "LlamaForCausalLM"
    assert good["model"]["parameters"] > 7_000_000_000
    assert isinstance(good["findings"], list)
    assert bad["model"] is None
    assert bad["error"]["kind"] == "not-found"
    assert report["summary"]["targets"] == 2
    assert report["summary"]["failed_targets"] == 1


def test_output_file_still_written_when_a_target_fails(tmp_path):
    out = tmp_path / "report.json"
    proc = run_archlint("./no/such/dir", "--format", "json", "--output", str(out))

    assert proc.returncode == 3
    assert proc.stdout == ""
    assert_one_error_line(proc.stderr, "./no/such/dir")
    assert json.loads(out.read_text())["results"][0]["error"]["kind"] == "not-found"


def test_text_report_file_carries_the_failed_targets_cause(tmp_path):
    """Written to a file, the text report says why a target failed, as JSON does; on a
    terminal the report points to stderr, which says it once."""
    out, report = tmp_path / "report.txt", tmp_path / "also.txt"
    proc = run_archlint("./no/such/dir", "--output", str(out), "--report", f"text:{report}")

    assert proc.returncode == 3
    assert_one_error_line(proc.stderr, "./no/such/dir")
    cause = proc.stderr.strip().removeprefix("archlint: error: ./no/such/dir: ")
    for text in (out.read_text(), report.read_text()):
        assert "./no/such/dir" in text and "not-found" in text
        assert cause in " ".join(text.split())
    on_terminal = run_archlint("./no/such/dir")
    assert "on stderr" in on_terminal.stdout and cause not in " ".join(on_terminal.stdout.split())


def test_debug_shows_the_traceback(tmp_path):
    target, _ = factory_raises(tmp_path)
    proc = run_archlint(target, "--debug")

    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "boom" in proc.stderr


def test_meta_unsafe_factory_is_rescued_by_the_fallback(tmp_path):
    """The contrast to build_fails_on_meta: .item() on a small tensor made *without* a
    device fails on meta, but build.py's fallback builds it with CPU factories."""
    path = write(tmp_path / "model.py", """
        import torch
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                n = int(torch.arange(10).sum().item())  # 45
                self.proj = nn.Linear(n, n)

        def build():
            return Model()
    """)
    proc = run_archlint(f"{path}:build", "--format", "json", "--fail-on", "never")

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["results"][0]
    assert result["error"] is None
    assert result["model"]["parameters"] == 45 * 45 + 45


def test_a_target_error_survives_pickling():
    """A report crosses processes (the census' workers, the test suite's): its error must too."""
    import pickle

    from archlint.errors import TargetError

    error = pickle.loads(pickle.dumps(TargetError("remote-code", "x: needs --trust-remote-code")))
    assert (type(error), error.kind, error.message) == (TargetError, "remote-code", "x: needs --trust-remote-code")
