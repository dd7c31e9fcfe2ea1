"""A Hub that fails: each fault its own kind, one line, within one deadline, no retry log.

Against tests/hub_server.py: a Hub answering 500, a socket that accepts and never answers,
404 and 401. In-process runs time the Hub part alone; the subprocess runs check what a user
sees (exit code, one stderr line, the JSON report, a good target in the same run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from hub_server import GEMMA, LLAMA, SilentHub
from support import REPO, check_outputs

from archlint.errors import TargetError
from archlint.resolve import resolve

GOOD = str(REPO / "fixtures" / "zoo" / "bare.py") + ":BareProjectionModel"


def timed_error(target: str, **kwargs) -> tuple[TargetError, float]:
    start = time.monotonic()
    with pytest.raises(TargetError) as info:
        resolve(target, **kwargs)
    return info.value, time.monotonic() - start


@pytest.fixture
def silent_hub(fake_hub, monkeypatch):
    """The fake Hub's environment, pointed at a socket that never answers."""
    import huggingface_hub.constants as hf_constants

    with SilentHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(hf_constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        yield hub


def test_http_500_is_a_hub_error_at_once(fake_hub):
    fake_hub.failing[LLAMA] = 500
    error, seconds = timed_error(LLAMA)

    assert error.kind == "hub-error"
    assert "HTTP 500" in error.message
    assert [r.status for r in fake_hub.requests] == [500]  # asked once: no retries
    assert seconds < 5


def test_http_500_falls_back_to_the_cached_config(fake_hub):
    resolve(LLAMA)
    fake_hub.failing[LLAMA] = 503
    assert resolve(LLAMA).config.model_type == "llama"


def test_a_hub_that_never_answers_ends_within_the_deadline(silent_hub):
    error, seconds = timed_error(LLAMA, hub_timeout=2)

    assert error.kind == "hub-error"
    assert "did not answer within 2 s" in error.message
    assert silent_hub.connections >= 1
    assert 1.5 < seconds < 8


def test_404_and_401_are_answered_at_once(fake_hub):
    missing, missing_seconds = timed_error("acme/no-such-model")
    gated, gated_seconds = timed_error(GEMMA)

    assert missing.kind == "repo-not-found" and gated.kind == "gated"
    assert [r.status for r in fake_hub.requests] == [404, 401]
    assert missing_seconds < 5 and gated_seconds < 5


# -- what the user sees ----------------------------------------------------------------


def run_cli(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "archlint", GOOD, *args, "--format", "json", "--fail-on", "never"],
                          cwd=REPO / "tests", env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    check_outputs(["--format", "json"], proc, cwd=REPO / "tests")
    return proc, json.loads(proc.stdout), seconds


def assert_one_hub_line(proc, report, target: str, kind: str) -> dict:
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines() if target in line]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no retry log, no warnings
    assert "Traceback" not in proc.stderr
    good, bad = report["results"]
    assert good["error"] is None and good["model"]["class"] == "BareProjectionModel"
    assert bad["error"]["kind"] == kind, bad["error"]
    return bad["error"]


@pytest.mark.slow
def test_cli_http_500(fake_hub):
    fake_hub.failing[LLAMA] = 500
    proc, report, _ = run_cli(fake_hub.env(), LLAMA)

    error = assert_one_hub_line(proc, report, LLAMA, "hub-error")
    assert "HTTP 500" in error["message"]
    assert [r.status for r in fake_hub.requests] == [500]


@pytest.mark.slow
def test_cli_silent_hub_exits_within_the_deadline(silent_hub, fake_hub):
    proc, report, seconds = run_cli(fake_hub.env(HF_ENDPOINT=silent_hub.url, HF_HUB_ETAG_TIMEOUT="3"), LLAMA)

    error = assert_one_hub_line(proc, report, LLAMA, "hub-error")
    assert "did not answer within 3 s" in error["message"]
    # The Hub part alone is timed in-process above; this bounds the whole run (starting Python,
    # torch and transformers takes up to a minute on a busy CI machine; without a deadline a
    # silent Hub kept archlint retrying for more than 5 minutes).
    assert seconds < 3 + 150


@pytest.mark.slow
def test_cli_target_time_limit_bounds_the_hub_too(silent_hub, fake_hub):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "archlint", LLAMA, "--timeout", "2", "--format", "json"],
                          cwd=REPO / "tests", env=fake_hub.env(HF_ENDPOINT=silent_hub.url),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["error"]["kind"] in ("hub-error", "timeout")
    assert time.monotonic() - start < 2 + 150
