"""Never crash, never hang: hostile targets end as one clean line and a result.

Every case runs with a good target in the same run: the bad one becomes its result's
``error`` (a stable ``kind``), stderr holds one line for it and no traceback, the exit code
is 3, and the good target is still linted. The command line runs in-process (click's
CliRunner) except where only a real process can tell (Ctrl-C, library logging on stderr).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from support import REPO, check_outputs

from archlint import lint
from archlint.cli import main
from archlint.deadline import Deadline, DeadlineExceeded
from archlint.lora import reimplementation
from archlint.lora.plan import Plan

GOOD = "fixtures/zoo/bare.py:BareProjectionModel"  # a tiny model: linted in well under a second
LLAMA = REPO / "fixtures" / "configs" / "meta-llama__Llama-3.1-8B" / "config.json"
GEMMA3 = REPO / "fixtures" / "configs" / "google__gemma-3-4b-it" / "config.json"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_folder(tmp_path: Path, name: str, text: str) -> str:
    write(tmp_path / name / "config.json", text)
    return str(tmp_path / name)


def mutated(base: Path, **changes) -> str:
    config = json.loads(base.read_text())
    for key, value in changes.items():
        holder = config
        *parents, leaf = key.split("__")
        for parent in parents:
            holder = holder[parent]
        holder[leaf] = value
    return json.dumps(config)


# -- the cases: tmp_path -> (target, extra CLI arguments, expected kind) ----------------


def _config_case(name: str, kind: str, text_of):
    def case(tmp_path: Path):
        return config_folder(tmp_path, name, text_of()), [], kind
    case.__name__ = name
    return case


def _factory_case(name: str, kind: str, body: str, *args: str):
    def case(tmp_path: Path):
        path = write(tmp_path / f"{name}.py", body)
        return f"{path}:build", list(args), kind
    case.__name__ = name
    return case


def _target_case(name: str, kind: str, target: str):
    def case(tmp_path: Path):
        return target, [], kind
    case.__name__ = name
    return case


def symlink_loop(tmp_path: Path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return str(loop), [], "not-found"


CASES = [
    _config_case("model_type_list", "bad-config", lambda: mutated(LLAMA, model_type=["llama"])),
    _config_case("model_type_dict", "bad-config", lambda: mutated(LLAMA, model_type={"a": 1})),
    _config_case("auto_map_null", "bad-config", lambda: mutated(LLAMA, auto_map=None)),
    _config_case("auto_map_int", "bad-config", lambda: mutated(LLAMA, auto_map=5)),
    _config_case("architectures_true", "bad-config", lambda: mutated(LLAMA, architectures=True)),
    _config_case("architectures_int_list", "bad-config", lambda: mutated(LLAMA, architectures=[5])),
    _config_case("architectures_dict", "bad-config", lambda: mutated(LLAMA, architectures={"a": 1})),
    _config_case("sub_config_string", "bad-config", lambda: mutated(GEMMA3, text_config="big")),
    _config_case("negative_size", "bad-config", lambda: mutated(LLAMA, num_attention_heads=-32)),
    _config_case("nan_epsilon", "bad-config", lambda: mutated(LLAMA, rms_norm_eps=float("nan"))),
    _config_case("nested_10000_deep", "malformed-config",
                 lambda: '{"model_type": "llama", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"),
    _config_case("integer_of_5000_digits", "malformed-config",
                 lambda: '{"model_type": "llama", "vocab_size": ' + "9" * 5000 + "}"),
    _config_case("layers_10_12", "too-large", lambda: mutated(LLAMA, num_hidden_layers=10**12)),
    _config_case("text_config_layers_10_30", "too-large",
                 lambda: mutated(GEMMA3, text_config__num_hidden_layers=10**30)),
    _config_case("hidden_x_layers", "too-large", lambda: mutated(LLAMA, hidden_size=1 << 20, num_hidden_layers=4096)),
    _target_case("hub_id_dotdot", "bad-target", "org/.."),
    _target_case("hub_id_double_dash", "bad-target", "org--x/model"),
    _target_case("hub_id_trailing_dot", "bad-target", "org/model."),
    symlink_loop,
    _factory_case("factory_loops_forever", "timeout", """
        def build():
            while True:
                pass
    """, "--timeout", "5"),
    _factory_case("factory_sleeps", "timeout", """
        import time
        def build():
            time.sleep(3600)
    """, "--timeout", "5"),
    _factory_case("factory_swallows_exceptions", "timeout", """
        def build():
            while True:
                try:
                    while True:
                        pass
                except BaseException:  # model code that swallows everything, once
                    break
            while True:
                pass
    """, "--timeout", "5"),
    _factory_case("factory_calls_sys_exit", "internal", """
        import sys
        def build():
            sys.exit(4)
    """),
    _factory_case("module_that_breaks_archlint", "internal", """
        from torch import nn
        class Weird(nn.Module):
            def named_parameters(self, *args, **kwargs):
                raise LookupError("no parameters for you")
        def build():
            return Weird()
    """),
]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_clean_failure(result, bad: str, kind: str, good: str = GOOD) -> dict:
    assert result.exit_code == 3, (result.exit_code, result.stderr, result.stdout[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("archlint: error: ") and bad in lines[0], lines[0]
    report = json.loads(result.stdout)
    by_target = {r["target"]: r for r in report["results"]}
    error = by_target[bad]["error"]
    assert error["kind"] == kind, error
    assert "\n" not in error["message"]
    assert by_target[good]["error"] is None and by_target[good]["model"]["class"] == "BareProjectionModel"
    return error


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_hostile_target_is_one_clean_line(case, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target, args, kind = case(tmp_path)
    start = time.monotonic()
    result = invoke(GOOD, target, "--format", "json", "--fail-on", "never", *args)
    error = assert_clean_failure(result, target, kind)
    if kind == "timeout":  # a hang guard: the 5 s limit plus starting the libraries on a busy machine
        assert time.monotonic() - start < 5 + 120
        assert "--timeout" in error["message"]
    if kind == "internal":
        assert "--debug" in error["message"]
    if kind in ("bad-config", "too-large"):
        assert "config key `" in error["message"] or "` x `" in error["message"]


@pytest.mark.slow
def test_every_case_in_one_real_process(tmp_path):
    """A real process sees what in-process runs cannot: library logging and warnings on stderr."""
    targets, kinds = [], {}
    for case in CASES:
        if case.__name__.startswith("factory_") or case.__name__ == "module_that_breaks_archlint":
            continue  # the factory cases need their own --timeout; they run in-process above
        target, _, kind = case(tmp_path)
        targets.append(target)
        kinds[target] = kind
    proc = subprocess.run(
        [sys.executable, "-m", "archlint", GOOD, *targets, "--format", "json", "--fail-on", "never"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"},
        timeout=600,
    )
    check_outputs(["--format", "json"], proc, cwd=REPO)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(targets), proc.stderr  # exactly one line per failed target
    report = json.loads(proc.stdout)
    assert {r["target"]: r["error"]["kind"] for r in report["results"][1:]} == kinds
    assert report["results"][0]["error"] is None


def test_debug_reraises(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    target, _, _ = next(c for c in CASES if c.__name__ == "module_that_breaks_archlint")(tmp_path)
    with pytest.raises(LookupError, match="no parameters for you"):
        invoke(target, "--debug")


def test_lint_returns_a_report_from_a_worker_thread(tmp_path):
    """No signals outside the main thread: the watchdog ends a Python loop there too."""
    path = write(tmp_path / "spin.py", """
        def build():
            while True:
                pass
    """)
    out = {}

    def work():
        start = time.monotonic()
        out["report"] = lint(f"{path}:build", timeout=1.5)
        out["seconds"] = time.monotonic() - start

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert out["report"].results[0].error.kind == "timeout"
    assert 1.4 < out["seconds"] < 10


def test_deadline_is_disarmed_after_the_block():
    with Deadline(0.3):
        pass
    time.sleep(0.6)  # no late delivery
    with pytest.raises(DeadlineExceeded), Deadline(0.2):
        time.sleep(5)
    time.sleep(1.5)  # the repeated delivery stopped with the block


def test_timeout_from_the_configuration_file(tmp_path, monkeypatch):
    path = write(tmp_path / "spin.py", """
        def build():
            while True:
                pass
    """)
    write(tmp_path / "archlint.toml", "timeout = 1.5\n")
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    result = invoke(GOOD.replace("fixtures", str(REPO / "fixtures"), 1), f"{path}:build", "--format", "json")
    assert time.monotonic() - start < 30
    assert_clean_failure(result, f"{path}:build", "timeout", good=GOOD.replace("fixtures", str(REPO / "fixtures"), 1))


@pytest.mark.parametrize("value", ['"fast"', "-1", "true"])
def test_a_bad_timeout_in_the_configuration_is_a_usage_error(tmp_path, monkeypatch, value):
    write(tmp_path / "archlint.toml", f"timeout = {value}\n")
    monkeypatch.chdir(tmp_path)
    result = invoke(str(REPO / GOOD))
    assert result.exit_code == 2
    assert "timeout" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- output paths: usage errors, before the lint starts -----------------------------------


MARKER_FACTORY = """
    from pathlib import Path
    from torch import nn
    def build():
        Path(__file__).with_name("BUILT").touch()
        return nn.Linear(4, 4)
"""


@pytest.mark.parametrize("option", ["--output", "--report", "--write-baseline"])
@pytest.mark.parametrize("where", ["under_a_file", "a_folder", "missing_folder"])
def test_unwritable_output_is_a_usage_error_before_the_lint(option, where, tmp_path):
    factory = write(tmp_path / "model.py", MARKER_FACTORY)
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    path = {"under_a_file": tmp_path / "plain.txt" / "out.json", "a_folder": tmp_path / "folder",
            "missing_folder": tmp_path / "no" / "such" / "out.json"}[where]
    value = f"json:{path}" if option == "--report" else str(path)
    result = invoke(f"{factory}:build", option, value)
    if option == "--report" and where == "missing_folder":  # --report creates the folders it needs
        assert result.exit_code in (0, 1), result.stderr
        assert json.loads(path.read_text())["results"][0]["error"] is None
        return
    assert result.exit_code == 2, (result.stderr, result.stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archlint: error: ") and option in lines[0], result.stderr
    assert not (tmp_path / "BUILT").exists(), "the lint ran before the output path was checked"


def test_non_utf8_peft_config_is_a_usage_error(tmp_path):
    bad = tmp_path / "adapter_config.json"
    bad.write_bytes(b'{"target_modules": ["q_proj\xff\xfe"]}')
    result = invoke(str(REPO / GOOD), "--peft-config", str(bad))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "UTF-8" in lines[0], result.stderr


def test_non_utf8_baseline_is_a_usage_error(tmp_path):
    bad = tmp_path / "baseline.json"
    bad.write_bytes(b'{"archlint_baseline": 1, "findings": ["\xff"]}')
    result = invoke(str(REPO / GOOD), "--baseline", str(bad))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_configuration_nested_thousands_deep_is_a_usage_error(tmp_path, monkeypatch):
    write(tmp_path / "archlint.toml", "select = " + "[" * 5000 + "]" * 5000 + "\n")
    monkeypatch.chdir(tmp_path)
    result = invoke(str(REPO / GOOD))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nested too deep" in result.stderr, result.stderr


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    factory = write(tmp_path / "slow.py", """
        import time
        from pathlib import Path
        def build():
            Path(__file__).with_name("STARTED").touch()
            while True:
                time.sleep(0.05)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlint", f"{factory}:build"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        # as in a terminal: a suite started in the background (`cmd &`) runs with SIGINT ignored,
        # and a child inherits that, so Ctrl-C would never reach it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "STARTED").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the factory never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["archlint: interrupted"], stderr


# -- the catalogue ---------------------------------------------------------------------


def test_every_error_kind_is_catalogued_and_documented():
    import re

    from archlint.errors import KINDS

    raised = set()
    for path in (REPO / "src" / "archlint").rglob("*.py"):
        raised |= set(re.findall(r'TargetError\(\s*"([a-z-]+)"', path.read_text()))
    raised |= {"timeout", "internal"}  # made by errors.timeout_error / errors.internal_error
    assert raised == set(KINDS), raised ^ set(KINDS)
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", (REPO / "docs" / "errors.md").read_text(), re.M))
    assert documented == set(KINDS), documented ^ set(KINDS)


def test_module_sizes_held_as_tensors_still_give_a_json_report(tmp_path):
    """A model whose config computes a width as a 0-d tensor (transformers' inkling_mm_model
    default does) builds Linears whose ``in_features`` is a tensor: every number in the
    report stays a plain int."""
    path = write(tmp_path / "tensor_sizes.py", """
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                width = torch.tensor(8, device="cpu")
                self.q_proj = nn.Linear(8, 8)
                self.q_proj.in_features = width
                self.q_proj.out_features = width

            def forward(self, x):
                return self.q_proj(x)

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = nn.ModuleList(Block() for _ in range(2))

            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x
    """)
    report = lint(f"{path}:Model")
    result = report.results[0]
    assert result.error is None
    assert all(type(p.trainable) is int for p in result.plans)
    json.dumps(report.to_dict())
    with torch.device("meta"):
        model = runpy.run_path(str(path))["Model"]()
    outcome = reimplementation.run(model, Plan.from_mapping({"target_modules": ["q_proj"], "r": 8}))
    assert type(outcome.trainable) is int and outcome.trainable == 2 * 8 * (8 + 8)
