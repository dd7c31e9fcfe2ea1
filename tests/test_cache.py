"""The result cache: what makes a target miss, what a hit returns, and how entries survive damage.

Every test has an empty cache of its own (conftest sets ``XDG_CACHE_HOME``). Whether a
model was built is counted by wrapping :func:`archlint.build.build`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import CONFIGS

from archlint import build as build_module
from archlint.api import lint_many
from archlint.cache import ResultCache, cache_dir
from archlint.cli import main
from archlint.lora import Plan

SELECT = ["NORM", "ARCH"]  # no LoRA rule: no PEFT runs, the tests stay fast

BLOCKS = '''\
import torch
from torch import nn

EPS = 1e-6


class MyRMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight
'''

NET = '''\
from torch import nn

from cache_test_blocks import MyRMSNorm


class Net(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.norm = MyRMSNorm(d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        return self.proj(self.norm(x))
'''


@pytest.fixture
def builds(monkeypatch):
    """The targets built in this test, in order."""
    built: list[str] = []
    real = build_module.build

    def counting(spec):
        built.append(spec.target)
        return real(spec)

    monkeypatch.setattr(build_module, "build", counting)
    return built


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    """A two-layer Llama config in a folder of its own."""
    data = json.loads((CONFIGS / "meta-llama__Llama-3.1-8B" / "config.json").read_text())
    data.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=256)
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(data, indent=2))
    return folder


@pytest.fixture
def factory(tmp_path, monkeypatch) -> Path:
    """``net.py:Net``, whose norm class lives in a module beside it."""
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "cache_test_blocks.py").write_text(BLOCKS)
    (folder / "net.py").write_text(NET)
    monkeypatch.delitem(sys.modules, "cache_test_blocks", raising=False)
    yield folder / "net.py"
    sys.modules.pop("cache_test_blocks", None)


def lint(targets, **kwargs):
    kwargs.setdefault("select", SELECT)
    return lint_many([str(t) for t in targets], cache=ResultCache(), **kwargs)


def json_of(report) -> str:
    from archlint.render import RenderOptions, render

    return render(report, "json", RenderOptions())


def entries() -> list[Path]:
    return sorted(p for p in cache_dir().glob("*.json") if not p.name.startswith("catalogue-"))


# -- hits ------------------------------------------------------------------------------


def test_identical_inputs_hit_and_every_format_renders_byte_identical(tiny_config, factory, builds, tmp_path):
    """Two CLI runs: the second builds nothing, and its reports are the same bytes."""
    targets = [str(tiny_config), f"{factory}:Net"]
    outputs = []
    for run in ("cold", "cached"):
        out = tmp_path / run
        out.mkdir()
        result = CliRunner().invoke(main, [*targets, "--format", "json", "-o", str(out / "report.json"),
                                           "--report", f"text:{out / 'report.txt'}",
                                           "--report", f"sarif:{out / 'report.sarif'}",
                                           "--report", f"github:{out / 'report.github'}"])
        assert result.exit_code in (0, 1), result.output
        outputs.append((result.exit_code, {p.name: p.read_bytes() for p in out.iterdir()}))
    assert builds == targets  # each built once, by the first run
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1]["report.json"])["results"][1]["findings"]  # there is something to compare


def test_a_config_that_ships_a_quantization_config_is_served_from_the_cache(tiny_config, builds, tmp_path):
    """FP8/MXFP4 checkpoints ship their quantization_config: the preview is stored with the
    result, and the cached report renders the same bytes."""
    data = json.loads((tiny_config / "config.json").read_text())
    data["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                   "bnb_4bit_quant_type": "nf4"}
    (tiny_config / "config.json").write_text(json.dumps(data, indent=2))
    outputs = []
    for run in ("cold", "cached"):
        out = tmp_path / run
        out.mkdir()
        result = CliRunner().invoke(main, [str(tiny_config), "--format", "json", "-o", str(out / "report.json"),
                                           "--report", f"text:{out / 'report.txt'}"])
        assert result.exit_code in (0, 1), result.output
        outputs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert builds == [str(tiny_config)]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]["report.json"])["results"][0]["quantization"]["method"] == "bitsandbytes"


def test_no_cache_neither_reads_nor_writes(tiny_config, builds):
    for _ in range(2):
        assert CliRunner().invoke(main, [str(tiny_config), "--no-cache", "--select", "NORM"]).exit_code == 0
    assert len(builds) == 2 and entries() == []


def test_one_changed_model_in_a_list_rebuilds_only_that_model(tiny_config, factory, builds, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((tiny_config / "config.json").read_text().replace('"rms_norm_eps": 1e-05',
                                                                                         '"rms_norm_eps": 1e-06'))
    targets = [tiny_config, other, f"{factory}:Net", "llama"]
    before = lint(targets)
    assert len(builds) == 4
    _edit(tiny_config / "config.json", '"num_hidden_layers": 2', '"num_hidden_layers": 3')
    after = lint(targets)
    assert builds[4:] == [str(tiny_config)]
    assert after.results[0].model.modules > before.results[0].model.modules  # the new config's result
    assert [r.to_dict() for r in after.results[1:]] == [r.to_dict() for r in before.results[1:]]


# -- misses: each input of the key -------------------------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


CHANGES = {
    # change -> (what to do, which targets must rebuild: "config", "factory" or both)
    "config": (lambda t, f, mp: _edit(t / "config.json", '"rope_theta": 500000.0', '"rope_theta": 10000.0'),
               {"config"}),
    "model source file": (lambda t, f, mp: _edit(f.parent / "cache_test_blocks.py", "EPS = 1e-6", "EPS = 1e-5"),
                          {"factory"}),
    "pragma": (lambda t, f, mp: _edit(f, "self.norm = MyRMSNorm(d)",
                                      "self.norm = MyRMSNorm(d)  # archlint: ignore[NORM001] fused by our trainer"),
               {"factory"}),
    "plan": (None, {"config", "factory"}),
    "selection": (None, {"config", "factory"}),
    "plugin set": (lambda t, f, mp: mp.syspath_prepend(str(_plugin_dist(t.parent))), {"config", "factory"}),
    "library version": (lambda t, f, mp: mp.syspath_prepend(str(_newer_transformers(t.parent))), {"config", "factory"}),
}


def _plugin_dist(directory: Path) -> Path:
    """A distribution with one ``archlint.rules`` entry point (importlib.metadata reads only this)."""
    site = directory / "site"
    dist = site / "archlint_cache_test_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: archlint-cache-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[archlint.rules]\nnothing = archlint_cache_test_plugin:Nothing\n")
    return site


def _newer_transformers(directory: Path) -> Path:
    """A site directory where importlib.metadata finds transformers 999.0 first."""
    site = directory / "newer"
    dist = site / "transformers-999.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: transformers\nVersion: 999.0\n")
    return site


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_input_misses(change, tiny_config, factory, builds, monkeypatch):
    targets = [tiny_config, f"{factory}:Net"]
    names = {"config": str(tiny_config), "factory": f"{factory}:Net"}
    first = lint(targets)
    lint(targets)
    assert len(builds) == 2  # identical inputs: the second lint built nothing
    edit, rebuilt = CHANGES[change]
    kwargs = {}
    if edit is not None:
        edit(tiny_config, factory, monkeypatch)
    if change == "plan":
        kwargs["plan"] = Plan.from_flags(target_modules="q_proj")
    if change == "selection":
        kwargs["select"] = ["NORM001"]
    again = lint(targets, **kwargs)
    assert sorted(builds[2:]) == sorted(names[r] for r in rebuilt)
    if change == "pragma":  # the rebuilt result honours the new pragma
        assert any(f.code == "NORM001" for f in first.results[1].findings)
        assert not any(f.code == "NORM001" for f in again.results[1].findings)
    builds.clear()
    lint(targets, **kwargs)
    assert builds == []  # and the new inputs are cached in turn


def test_a_hub_revision_is_keyed_on_its_commit(fake_hub, builds):
    from hub_server import LLAMA

    lint([f"{LLAMA}@v1"], select=["NORM"])
    lint([f"{LLAMA}@v1"], select=["NORM"])  # online: the branch is asked for again, same commit
    assert builds == [f"{LLAMA}@v1"]
    fake_hub.set_offline()
    lint([f"{LLAMA}@v1"], select=["NORM"], offline=True)  # offline: read from the cache's refs
    assert builds == [f"{LLAMA}@v1"]
    fake_hub.set_offline(False)
    lint([LLAMA], select=["NORM"])  # another revision, another commit
    assert builds == [f"{LLAMA}@v1", LLAMA]


# -- damaged entries -----------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _tamper(path: Path) -> None:
    """Valid JSON, valid format, but the body no longer matches its checksum."""
    entry = json.loads(path.read_text())
    entry["body"]["result"]["findings"] = []
    path.write_text(json.dumps(entry))


def _foreign(path: Path) -> None:
    entry = json.loads(path.read_text())
    entry["archlint_cache"] = 999
    path.write_text(json.dumps(entry))


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff not json")


def _other_key(path: Path) -> None:
    """A well-formed entry copied under another entry's name."""
    entry = json.loads(path.read_text())
    entry["key"] = "0" * 64
    path.write_text(json.dumps(entry))


@pytest.mark.parametrize("damage", [_truncate, _tamper, _foreign, _garbage, _other_key], ids=lambda f: f.__name__[1:])
def test_a_damaged_entry_is_ignored_and_rewritten(damage, tiny_config, builds):
    expected = json_of(lint([tiny_config]))
    (entry,) = entries()
    damage(entry)
    assert json_of(lint([tiny_config])) == expected  # linted again, never the damaged data
    assert len(builds) == 2
    assert ResultCache().read(entry.stem) is not None  # rewritten whole
    lint([tiny_config])
    assert len(builds) == 2


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_concurrent_cli_runs_on_one_cache_both_succeed(tiny_config):
    command = [sys.executable, "-m", "archlint", str(tiny_config), "--format", "json", "--fail-on", "never",
               "--select", "NORM,ARCH"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert outs[0][0] == outs[1][0] and json.loads(outs[0][0])["results"][0]["model"]
    (entry,) = entries()
    assert ResultCache().read(entry.stem) is not None


def _hammer(directory: str, body_size: int, rounds: int, queue) -> None:
    cache = ResultCache(directory)
    torn = 0
    for i in range(rounds):
        cache.write("shared", {"n": i, "payload": "x" * body_size})
        if cache.read("shared") is None:
            torn += 1
    queue.put(torn)


@pytest.mark.slow
def test_concurrent_writers_never_expose_half_an_entry(tmp_path):
    """Four processes rewrite one large entry and read it back: every read is whole."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_hammer, args=(str(tmp_path), 1 << 20, 25, queue)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [queue.get(timeout=5) for _ in workers] == [0, 0, 0, 0]
    assert not list(tmp_path.glob("*.tmp"))


# -- no torch on a hit, the subcommands ------------------------------------------------------------

NO_TORCH_PROBE = textwrap.dedent('''
    import sys
    from archlint.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        code = e.code
    heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
    print("EXIT", code, "HEAVY", ",".join(heavy) or "none", file=sys.stderr)
''')


@pytest.mark.slow
def test_a_hit_imports_neither_torch_nor_transformers(tiny_config, factory):
    args = [str(tiny_config), f"{factory}:Net", "--format", "json"]
    cold = CliRunner().invoke(main, args)
    probe = subprocess.run([sys.executable, "-c", NO_TORCH_PROBE, *args], capture_output=True, text=True,
                           cwd=os.getcwd(), check=False)
    assert f"EXIT {cold.exit_code} HEAVY none" in probe.stderr, probe.stderr
    assert probe.stdout == cold.stdout


def test_cache_info_and_clear(tiny_config):
    CliRunner().invoke(main, [str(tiny_config), "--select", "NORM"])
    info = CliRunner().invoke(main, ["cache", "info"])
    assert info.exit_code == 0 and str(cache_dir()) in info.output and "entries:   2" in info.output
    cleared = CliRunner().invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 2 entries" in cleared.output
    assert "entries:   0" in CliRunner().invoke(main, ["cache", "info"]).output


def test_the_cache_lives_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "archlint"
    monkeypatch.setenv("ARCHLINT_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
