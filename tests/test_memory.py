"""Linting a 671B-parameter config costs about as much memory as linting an 8B one.

archlint builds on the meta device, so peak RSS must not grow with the parameter count.
Each model is linted in its own fresh interpreter, which reports its own peak RSS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"

BIG = CONFIGS / "deepseek-ai__DeepSeek-V3"  # 671B parameters
SMALL = CONFIGS / "meta-llama__Llama-3.1-8B"
MAX_RATIO = 1.3

# Lint one target and print "<peak RSS in KiB> <parameter count>" (ru_maxrss is KiB on
# Linux, bytes on macOS; both runs use the same unit, so the ratio is unaffected).
_WRAPPER = """
import resource, sys
from archlint.api import lint
report = lint(sys.argv[1])
result = report.results[0]
if result.error is not None:
    sys.exit("lint failed: " + result.error.message)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, result.model.parameters)
"""


def peak_rss(config: Path) -> tuple[int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(config)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rss, params = proc.stdout.split()[-2:]
    return int(rss), int(params)


@pytest.mark.slow
def test_peak_rss_does_not_scale_with_parameter_count():
    big_rss, big_params = peak_rss(BIG)
    small_rss, small_params = peak_rss(SMALL)

    assert big_params > 600e9, big_params  # really the 671B model, built in full
    assert small_params < 10e9, small_params
    assert big_rss <= MAX_RATIO * small_rss, (
        f"DeepSeek-V3 peak RSS {big_rss / 1024:.0f} MiB > {MAX_RATIO} x "
        f"Llama-3.1-8B peak RSS {small_rss / 1024:.0f} MiB"
    )
