"""How archlint resolves Hugging Face Hub ids, against a fake Hub on 127.0.0.1 (no network).

In-process tests call :func:`archlint.resolve.resolve`; the CLI tests run
``archlint <repo_id> --format json`` with ``HF_ENDPOINT`` & co. set -- in this process, and once in
a new process, which sees only the environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hub_server import GEMMA, LLAMA, LLAMA_V1_LAYERS, NO_CONFIG, commit_hash
from support import run_cli as run_in_process
from support import run_process

from archlint.errors import TargetError
from archlint.resolve import resolve

CLI_TIMEOUT = 600


def resolve_error(target: str, **kwargs) -> TargetError:
    with pytest.raises(TargetError) as info:
        resolve(target, **kwargs)
    error = info.value
    assert_one_line(error.message)
    assert str(error) == error.message
    assert error.message.startswith(target)
    return error


def assert_one_line(message: str) -> None:
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"error message is not one line: {message!r}"


def assert_only_config_fetched(fake_hub) -> None:
    assert fake_hub.requests, "the fake Hub saw no request"
    assert fake_hub.filenames == {"config.json"}, fake_hub.paths
    assert {r.method for r in fake_hub.requests} <= {"HEAD", "GET"}


# -- success --------------------------------------------------------------------------


def test_hub_id_resolves_to_its_config_only(fake_hub):
    spec = resolve(LLAMA)

    assert spec.kind == "hub"
    assert spec.target == LLAMA
    assert spec.config.model_type == "llama"
    assert spec.config.num_hidden_layers == 32
    assert spec.revision is None
    assert Path(spec.config_file).name == "config.json"
    assert Path(spec.config_file).resolve().is_relative_to(fake_hub.cache_dir.resolve())
    # Only config.json, never the weights that sit next to it.
    assert_only_config_fetched(fake_hub)
    assert all(p == f"/{LLAMA}/resolve/main/config.json" for p in fake_hub.paths), fake_hub.paths
    assert [r.status for r in fake_hub.requests] == [200] * len(fake_hub.requests)


def test_hub_id_at_revision(fake_hub):
    spec = resolve(f"{LLAMA}@v1")

    assert spec.kind == "hub"
    assert spec.revision == "v1"
    assert spec.config.model_type == "llama"
    assert spec.config.num_hidden_layers == LLAMA_V1_LAYERS  # the v1 config, not main's
    assert_only_config_fetched(fake_hub)
    assert all(p == f"/{LLAMA}/resolve/v1/config.json" for p in fake_hub.paths), fake_hub.paths


def test_hub_id_at_commit_hash(fake_hub):
    commit = commit_hash(LLAMA, "v1")
    spec = resolve(f"{LLAMA}@{commit}")

    assert spec.kind == "hub"
    assert spec.revision == commit
    assert spec.config.num_hidden_layers == LLAMA_V1_LAYERS
    assert_only_config_fetched(fake_hub)


# -- errors ---------------------------------------------------------------------------


def test_unknown_revision(fake_hub):
    error = resolve_error(f"{LLAMA}@no-such-tag")

    assert error.kind == "revision-not-found"
    assert "no-such-tag" in error.message
    assert [r.status for r in fake_hub.requests] == [404]


def test_unknown_repository(fake_hub):
    error = resolve_error("acme/no-such-model")

    assert error.kind == "repo-not-found"
    assert [r.path for r in fake_hub.requests] == ["/acme/no-such-model/resolve/main/config.json"]
    assert [r.status for r in fake_hub.requests] == [404]


def test_repository_without_config(fake_hub):
    error = resolve_error(NO_CONFIG)

    assert error.kind == "no-config"
    assert_only_config_fetched(fake_hub)  # it did not go looking at the weights either


def test_gated_without_token(fake_hub):
    error = resolve_error(GEMMA)

    assert error.kind == "gated"
    assert "HF_TOKEN" in error.message
    assert fake_hub.requests and all(r.authorization is None and r.status == 401 for r in fake_hub.requests)


def test_gated_with_a_wrong_token(fake_hub):
    fake_hub.set_token("hf_not_the_right_one")
    error = resolve_error(GEMMA)

    assert error.kind == "gated"
    assert "HF_TOKEN" in error.message
    assert fake_hub.requests and all(r.status == 403 for r in fake_hub.requests)


def test_gated_with_token(fake_hub):
    fake_hub.set_token(fake_hub.token)
    spec = resolve(GEMMA)

    assert spec.kind == "hub"
    assert spec.config.model_type == "gemma4"
    assert_only_config_fetched(fake_hub)
    assert all(r.authorization == f"Bearer {fake_hub.token}" for r in fake_hub.requests)


# -- offline and the cache ------------------------------------------------------------


def _go_offline(fake_hub, how: str) -> dict:
    """Cut the Hub off one way or another; returns the kwargs to pass to resolve()."""
    if how == "HF_HUB_OFFLINE":
        fake_hub.set_offline(True)
        return {}
    if how == "offline=True":
        return {"offline": True}
    if how == "server stopped":
        fake_hub.stop()
        return {}
    raise AssertionError(how)


OFFLINE_WAYS = ["HF_HUB_OFFLINE", "offline=True", "server stopped"]


@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_offline_resolves_from_the_cache(fake_hub, how):
    online = resolve(LLAMA)
    fake_hub.clear()

    kwargs = _go_offline(fake_hub, how)
    spec = resolve(LLAMA, **kwargs)

    assert spec.kind == "hub"
    assert spec.config.model_type == "llama"
    assert spec.config_file == online.config_file
    assert fake_hub.requests == []  # nothing reached the Hub


@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_offline_revision_resolves_from_the_cache(fake_hub, how):
    resolve(f"{LLAMA}@v1")
    fake_hub.clear()

    kwargs = _go_offline(fake_hub, how)
    spec = resolve(f"{LLAMA}@v1", **kwargs)

    assert spec.config.num_hidden_layers == LLAMA_V1_LAYERS
    assert fake_hub.requests == []


@pytest.mark.parametrize("how", OFFLINE_WAYS)
def test_offline_without_cache(fake_hub, how):
    kwargs = _go_offline(fake_hub, how)
    error = resolve_error(LLAMA, **kwargs)

    assert error.kind == "offline"
    assert fake_hub.requests == []


# -- the CLI, end to end ----------------------------------------------------------------


def run_cli(fake_hub, target: str, tmp_path: Path, *, process: bool = False,
            **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``archlint TARGET --format json`` from ``tmp_path`` (so that no local folder can shadow the
    Hub id); in a new process when ``process``. Not offline unless ``HF_HUB_OFFLINE`` is given."""
    args = (target, "--format", "json")
    env = {"HF_HUB_OFFLINE": None, **env}
    if process:
        proc = run_process(*args, cwd=tmp_path, env=env, timeout=CLI_TIMEOUT)
    else:
        proc = run_in_process(*args, cwd=tmp_path, env=env)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        pytest.fail(f"stdout is not a JSON report ({e}); exit {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc, report  # both helpers checked it against schema/report.schema.json


def assert_cli_error(proc: subprocess.CompletedProcess, report: dict, kind: str) -> dict:
    assert proc.returncode == 3, proc.stderr
    error = report["results"][0]["error"]
    assert error["kind"] == kind, error
    assert_one_line(error["message"])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"stderr should be one line, got:\n{proc.stderr}"
    return error


@pytest.mark.slow
def test_cli_hub_id_in_a_new_process(fake_hub, tmp_path):
    """The environment alone points a new process at the Hub (huggingface_hub reads it at import)."""
    proc, report = run_cli(fake_hub, LLAMA, tmp_path, process=True)

    assert proc.returncode in (0, 1), proc.stderr  # clean, or findings; never 3 (target error)
    result = report["results"][0]
    assert result["target"] == LLAMA
    assert result["error"] is None
    assert result["model"]["model_type"] == "llama"
    assert_only_config_fetched(fake_hub)


def test_cli_hub_id(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, LLAMA, tmp_path)

    assert proc.returncode in (0, 1), proc.stderr  # clean, or findings; never 3 (target error)
    result = report["results"][0]
    assert result["target"] == LLAMA
    assert result["error"] is None
    assert result["model"]["model_type"] == "llama"
    assert_only_config_fetched(fake_hub)


def test_cli_gated_without_token(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, GEMMA, tmp_path)

    error = assert_cli_error(proc, report, "gated")
    assert "HF_TOKEN" in error["message"]
    assert "HF_TOKEN" in proc.stderr


def test_cli_gated_with_token(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, GEMMA, tmp_path, HF_TOKEN=fake_hub.token)

    assert proc.returncode in (0, 1), proc.stderr
    assert report["results"][0]["error"] is None
    assert report["results"][0]["model"]["model_type"] == "gemma4"
    assert_only_config_fetched(fake_hub)


def test_cli_unknown_repository(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, "acme/no-such-model", tmp_path)
    assert_cli_error(proc, report, "repo-not-found")


def test_cli_unknown_revision(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, f"{LLAMA}@no-such-tag", tmp_path)
    assert_cli_error(proc, report, "revision-not-found")


def test_cli_offline_from_the_cache(fake_hub, tmp_path):
    resolve(LLAMA)  # fills the cache the CLI will read (same HF_HUB_CACHE)
    fake_hub.clear()
    fake_hub.stop()

    proc, report = run_cli(fake_hub, LLAMA, tmp_path, HF_HUB_OFFLINE="1")

    assert proc.returncode in (0, 1), proc.stderr
    assert report["results"][0]["error"] is None
    assert report["results"][0]["model"]["model_type"] == "llama"
    assert fake_hub.requests == []


def test_cli_offline_without_cache(fake_hub, tmp_path):
    proc, report = run_cli(fake_hub, LLAMA, tmp_path, HF_HUB_OFFLINE="1")

    assert_cli_error(proc, report, "offline")
    assert fake_hub.requests == []
