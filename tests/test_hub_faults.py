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
from support import run_cli as run_in_process

from archlint.errors import TargetError
from archlint.hub import HUB_TIMEOUT, hub_deadline
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


def test_cli_target_time_limit_bounds_the_hub_too(silent_hub, fake_hub):
    """``--timeout`` bounds the Hub's part of a target, the result cache's look-up included (it
    asks the Hub for the branch's commit before the lint does), so a silent Hub costs the time
    limit, not the 30 s Hub deadline."""
    # what a lint imports before any time limit starts, imported before the clock starts too
    import peft  # noqa: F401
    import transformers.initialization  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    start = time.monotonic()
    proc = run_in_process(LLAMA, "--timeout", "2", "--format", "json",
                          env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": silent_hub.url})
    seconds = time.monotonic() - start

    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    error = json.loads(proc.stdout)["results"][0]["error"]
    assert (error["kind"], error["message"]) in (
        ("hub-error", f"{LLAMA}: the Hub did not answer within 2 s; try again later, "
                      "or set HF_HUB_ETAG_TIMEOUT to wait longer"),
        ("timeout", f"{LLAMA}: stopped after 2 s, its time limit; raise it with --timeout or "
                    "`timeout` in [tool.archlint] (0 = no limit)"),
    ), error
    assert silent_hub.connections >= 1
    assert seconds < HUB_TIMEOUT - 3  # the Hub's own deadline was not waited out


def test_the_hub_deadline_is_30_s_unless_hf_hub_etag_timeout_or_the_time_limit_says_less(monkeypatch):
    """What the silent-Hub tests above set short (``hub_timeout``, ``HF_HUB_ETAG_TIMEOUT``,
    ``--timeout``), this pins at its default: without them a target waits 30 s for the Hub."""
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    assert HUB_TIMEOUT == 30.0
    assert hub_deadline(None) == 30.0
    assert hub_deadline(600) == 30.0
    assert hub_deadline(2) == 2.0
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    assert hub_deadline(None) == 3.0 and hub_deadline(2) == 2.0
    for unusable in ("0", "-1", "soon"):
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", unusable)
        assert hub_deadline(None) == 30.0


def test_resolve_asks_the_hub_with_the_default_deadline(fake_hub, monkeypatch):
    """``resolve`` without ``hub_timeout`` gives the Hub request the 30 s deadline."""
    import archlint.hub as hub

    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    asked = []
    real_ask = hub._ask

    def ask(target, repo, revision, timeout, *, deadline):
        asked.append((timeout, deadline))
        return real_ask(target, repo, revision, timeout, deadline=deadline)

    monkeypatch.setattr(hub, "_ask", ask)
    assert resolve(LLAMA).config.model_type == "llama"
    (timeout, deadline), = asked
    assert deadline == 30.0 and 25.0 < timeout <= 30.0
