"""The forked worker (archlint.fork, archlint.facts.ahead): values delivered in order, every
failure a MISSING the caller recovers from, no child left behind, and lints whose reports
are byte for byte those of a lint without it."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from support import config, run_cli

from archlint import fork
from archlint.fork import MISSING, fork_worker

pytestmark = pytest.mark.skipif(not fork.available(), reason="forking a worker needs Linux and two CPUs")


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _die():
    os._exit(3)


def test_values_arrive_in_order_and_a_failed_job_is_missing_not_fatal():
    with fork_worker([("one", lambda: 1), ("boom", lambda: 1 / 0), ("lambda", lambda: lambda: 0),
                      ("two", lambda: {"x": (2,)})]) as worker:
        pid = worker.pid
        assert worker.names == ("one", "boom", "lambda", "two")
        assert worker.result("one") == 1
        assert worker.result("boom") is MISSING  # raised in the child
        assert worker.result("lambda") is MISSING  # does not pickle
        assert worker.result("two") == {"x": (2,)}
        assert worker.result("never asked") is MISSING
    assert _reaped(pid)
    assert worker.cpu_seconds >= 0.0


def test_a_child_that_dies_delivers_nothing_more_and_is_reaped():
    with fork_worker([("first", lambda: "a"), ("dies", _die), ("after", lambda: "b")]) as worker:
        pid = worker.pid
        assert worker.result("first") == "a"
        assert worker.result("after") is MISSING
    assert _reaped(pid)


def _burn():
    start = time.process_time()
    while time.process_time() - start < 0.05:
        pass
    return 1


def test_a_child_done_with_its_jobs_reports_its_cpu_when_closed_at_once():
    """The CPU frame follows the last job's: a lint that closes the worker right after taking
    its last value (DeepSeek-V3's preview) still records the worker's CPU seconds."""
    for _ in range(5):
        worker = fork_worker([("burn", _burn)])
        assert worker.result("burn") == 1
        worker.close()
        assert worker.cpu_seconds >= 0.05


def test_close_stops_a_child_still_working_at_once():
    worker = fork_worker([("slow", lambda: time.sleep(60))])
    pid = worker.pid
    start = time.monotonic()
    worker.close()
    assert time.monotonic() - start < 5
    assert _reaped(pid)
    worker.close()  # idempotent


def test_a_child_silent_past_the_patience_is_stopped_and_its_values_missing(monkeypatch):
    monkeypatch.setattr(fork, "PATIENCE", 0.5)
    worker = fork_worker([("stuck", lambda: time.sleep(60)), ("after", lambda: 1)])
    pid = worker.pid
    start = time.monotonic()
    assert worker.result("stuck") is MISSING
    assert worker.result("after") is MISSING
    assert time.monotonic() - start < 10
    assert _reaped(pid)
    worker.close()


def test_the_child_ignores_ctrl_c_and_writes_nothing_to_the_terminal(capfd):
    def job():
        print("from the child")
        print("from the child", file=sys.stderr)
        os.write(1, b"raw from the child\n")
        time.sleep(0.5)
        return "done"

    with fork_worker([("job", job)]) as worker:
        time.sleep(0.1)
        os.kill(worker.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        assert worker.result("job") == "done"
    out, err = capfd.readouterr()
    assert "child" not in out and "child" not in err


def test_archlint_worker_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("ARCHLINT_WORKER", "0")
    assert not fork.available()
    assert fork_worker([("x", lambda: 1)]) is None


# -- lints with and without the worker ---------------------------------------------------------


def _json(target: str, worker: str, *args: str) -> str:
    proc = run_cli(target, "--format", "json", "--no-cache", *args, env={"ARCHLINT_WORKER": worker})
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["google__gemma-4-E2B-it", "deepseek-ai__DeepSeek-V3"])
def test_a_real_config_reports_the_same_bytes_with_and_without_the_worker(name):
    """Gemma-4 E2B takes its all-linear step from the worker; DeepSeek-V3 its step and its
    FP8 quantization preview."""
    from archlint import lint

    report = lint(config(name))
    assert report.results[0].timings["worker"] > 0  # the worker ran and sent its CPU seconds
    assert _json(config(name), "1") == _json(config(name), "0")


def test_a_step_taken_ahead_is_not_used_when_the_forward_needs_an_input_it_assumed_absent():
    """The worker steps as if the text collator's inputs were enough; NeedsTokenTypes needs
    `token_type_ids`, so the lint steps with it supplied itself, and reports as without the worker."""
    target = "fixtures/zoo/training.py:NeedsTokenTypes"
    assert _json(target, "1") == _json(target, "0")
    assert '"missing-input"' in _json(target, "1")
