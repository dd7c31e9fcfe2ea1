"""The shipped pre-commit hook in a training repository: config models, per-module-ignores, pragmas.

The training repository is a temporary git repo with a pyproject.toml declaring the Gemma-4
E2B and Llama-3.1-8B configs (copied in) and a local model file. Its .pre-commit-config.yaml
points at a temporary hook repository holding this project's .pre-commit-hooks.yaml, byte
for byte, so the hook definition that ships (entry, files, pass_filenames) is what runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import CONFIGS, REPO, run_cli

PYPROJECT = """\
[project]
name = "my-finetunes"
version = "0"

[tool.archlint]
models = [
    "models/gemma-4-E2B-it",
    "models/Llama-3.1-8B",
    "train/net.py:Net",
]
select = ["LORA", "ARCH"]
"""

GEMMA_IGNORES = r"""
[[tool.archlint.per-module-ignores]]
model = "models/gemma-4-E2B-it"
modules = ['re:model\.(audio_tower|vision_tower)\..*']
codes = ["LORA001"]
reason = "the audio and vision towers stay frozen in our fine-tunes"

[[tool.archlint.per-module-ignores]]
model = "models/gemma-4-E2B-it"
modules = ['re:model\..*']
codes = ["LORA004"]
reason = "our target_modules regex is anchored to model.language_model"

[[tool.archlint.per-module-ignores]]
model = "models/gemma-4-E2B-it"
modules = ["k_proj", "v_proj"]
codes = ["LORA008"]
reason = "the KV-shared layers 15-34 have no k/v projections; we adapt q_proj/o_proj there"
"""

NET = '''\
from torch import nn


class ClampedLinear(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.linear = nn.Linear(d, d)

    def forward(self, x):
        return self.linear(x).clamp(-10, 10)


class Net(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.embed = nn.Linear(d, d)
        self.proj = ClampedLinear(d)
        self.gate_proj = ClampedLinear(d)  # a name the standard recipes target: LORA001 warns
        self.out = nn.Linear(d, d)

    def forward(self, x):
        return self.out(self.gate_proj(x) * self.proj(self.embed(x)))
'''


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def training_repo(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copyfile(REPO / ".pre-commit-hooks.yaml", hooks / ".pre-commit-hooks.yaml")
    git(hooks, "init", "-q")
    git(hooks, "add", ".")
    git(hooks, "commit", "-qm", "hooks")
    rev = git(hooks, "rev-parse", "HEAD")

    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "train").mkdir()
    shutil.copytree(CONFIGS / "google__gemma-4-E2B-it", repo / "models" / "gemma-4-E2B-it")
    shutil.copytree(CONFIGS / "meta-llama__Llama-3.1-8B", repo / "models" / "Llama-3.1-8B")
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / "train" / "net.py").write_text(NET)
    (repo / ".pre-commit-config.yaml").write_text(textwrap.dedent(f"""\
        repos:
          - repo: {hooks}
            rev: {rev}
            hooks:
              - id: archlint-system
        """))
    git(repo, "init", "-q")
    git(repo, "add", ".")
    return repo


def listed(path: str, out: str) -> bool:
    """Whether the text report lists module ``path`` of the local model (a ClampedLinear)."""
    return re.search(rf"^\s+{re.escape(path)}\b.*ClampedLinear", out, re.M) is not None


#: The report's width, pinned: the assertions read whole messages, which a narrower width
#: (pytest-xdist sets COLUMNS=80) would wrap.
REPORT_COLUMNS = "100"


def pre_commit(repo: Path) -> subprocess.CompletedProcess:
    git(repo, "add", ".")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
           "COLUMNS": REPORT_COLUMNS}
    return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"],
                          cwd=repo, env=env, capture_output=True, text=True)


def archlint_as_the_hook_runs_it(repo: Path) -> subprocess.CompletedProcess:
    """The hook's ``entry`` (``archlint``, no file names) in the repository, in this process."""
    return run_cli(cwd=repo, env={"NO_COLOR": "1", "COLUMNS": REPORT_COLUMNS})


@pytest.mark.slow
def test_precommit_hook_fails_on_gemma4_then_passes_with_ignores_and_a_pragma(training_repo):
    """pre-commit runs the hook when it fails and when it passes; the steps between run the
    hook's command in this process."""
    first = pre_commit(training_repo)
    out = first.stdout + first.stderr
    assert first.returncode == 1, out
    assert "archlint (system)" in out and "Failed" in out
    assert "models/gemma-4-E2B-it" in out and "Gemma4ForConditionalGeneration" in out
    assert "model.vision_tower.encoder.layers.*.self_attn.q_proj" in out  # the LORA001 wrappers
    assert "LORA004 target-name-collision" in out
    assert "train/net.py:Net" in out and listed("proj", out) and listed("gate_proj", out)

    # per-module-ignores for Gemma-4, and an inline pragma on the line that creates `proj`
    with (training_repo / "pyproject.toml").open("a") as fh:
        fh.write(GEMMA_IGNORES)
    net = training_repo / "train" / "net.py"
    net.write_text(NET.replace("self.proj = ClampedLinear(d)",
                               "self.proj = ClampedLinear(d)  # archlint: ignore[LORA001] clamp bounds are never hit"))
    second = archlint_as_the_hook_runs_it(training_repo)
    out = second.stdout + second.stderr
    assert second.returncode == 1, out
    # the Gemma-4 LORA001/LORA004 findings are ignored; its LORA009 info remains (it does not fail)
    # (the recipe table still says why q,k,v,o breaks on Gemma-4: that is not a finding)
    assert "Gemma4ClippableLinear is not a PEFT layer type" not in out and "LORA004" not in out
    assert "model.vision_tower.encoder.layers.*.self_attn.q_proj" not in out and "LORA009" in out
    assert listed("gate_proj", out)  # the other wrapper is still reported ...
    assert not listed("proj", out)  # ... but exactly the pragma'd one is silenced
    assert "ARCH001" not in out

    # gate_proj becomes a plain Linear: nothing left, the hook passes
    net.write_text(net.read_text().replace("self.gate_proj = ClampedLinear(d)", "self.gate_proj = nn.Linear(d, d)"))
    third = pre_commit(training_repo)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "archlint (system)" in third.stdout and "Passed" in third.stdout

    # a pragma that suppresses nothing is reported, and fails the hook
    net.write_text(net.read_text().replace("self.out = nn.Linear(d, d)",
                                           "self.out = nn.Linear(d, d)  # archlint: ignore[LORA001] stale"))
    fourth = archlint_as_the_hook_runs_it(training_repo)
    out = fourth.stdout + fourth.stderr
    assert fourth.returncode == 1, out
    assert "ARCH001 unused-suppression" in out and "train/net.py:" in out and "matched no LORA001 finding" in out


CLEAN_PYPROJECT = """\
[project]
name = "my-finetunes"
version = "0"

[tool.archlint]
models = ["models/Llama-3.1-8B", "train/net.py:Net"]
select = ["LORA", "ARCH"]
"""

MARKED_NET = '''\
import os

from torch import nn


class Net(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        with open(os.environ["NET_BUILT_MARKER"], "a") as fh:  # the test counts builds
            fh.write("built\\n")
        self.embed = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        return self.out(self.embed(x))
'''


@pytest.mark.slow
def test_second_commit_with_unchanged_models_is_served_from_the_cache(tmp_path):
    """Real `git commit`s through the installed hook: the first lints, the second (a new
    Python file the models do not import) builds no model."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    shutil.copyfile(REPO / ".pre-commit-hooks.yaml", hooks / ".pre-commit-hooks.yaml")
    git(hooks, "init", "-q")
    git(hooks, "add", ".")
    git(hooks, "commit", "-qm", "hooks")
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "train").mkdir()
    shutil.copytree(CONFIGS / "meta-llama__Llama-3.1-8B", repo / "models" / "Llama-3.1-8B")
    (repo / "pyproject.toml").write_text(CLEAN_PYPROJECT)
    (repo / "train" / "net.py").write_text(MARKED_NET)
    (repo / ".pre-commit-config.yaml").write_text(textwrap.dedent(f"""\
        repos:
          - repo: {hooks}
            rev: {git(hooks, "rev-parse", "HEAD")}
            hooks:
              - id: archlint-system
                args: [--debug]
                verbose: true
        """))
    marker = tmp_path / "net-built.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
           "NET_BUILT_MARKER": str(marker), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    git(repo, "init", "-q")
    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, env=env, check=True, capture_output=True)

    def commit(message: str) -> str:
        git(repo, "add", ".")
        done = subprocess.run(["git", "commit", "-m", message], cwd=repo, env=env, capture_output=True, text=True)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "archlint (system)" in out and "Passed" in out, out
        return out

    first = commit("models")
    assert re.search(r"debug: models/Llama-3\.1-8B: resolve .* build ", first), first
    assert re.search(r"debug: train/net\.py:Net: resolve .* build ", first), first
    assert marker.read_text() == "built\n"

    (repo / "train" / "data.py").write_text("def batches():\n    return []\n")
    second = commit("a data loader")
    assert re.search(r"debug: models/Llama-3\.1-8B: cache \d", second), second
    assert re.search(r"debug: train/net\.py:Net: cache \d", second), second
    assert " build " not in second, second  # no model was built ...
    assert marker.read_text() == "built\n"  # ... not even the factory's
    assert git(repo, "log", "--format=%s") == "a data loader\nmodels"
