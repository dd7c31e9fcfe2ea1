"""``import archlint`` and ``archlint --help`` load neither torch nor transformers.

Each runs in a fresh interpreter under ``python -X importtime``, whose log names every module
the interpreter imported; this process has long imported torch, so it cannot tell.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import REPO

HEAVY = ("torch", "transformers", "peft")


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # "import time: self [us] | cumulative | imported package", one line per module
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and line.count("|") == 2}
    assert "archlint" in modules, proc.stderr[-2000:]
    return modules


@pytest.mark.slow
@pytest.mark.parametrize("args", [("-c", "import archlint"), ("-m", "archlint", "--help")],
                         ids=["import archlint", "archlint --help"])
def test_no_heavy_import(args):
    modules = imported_modules(*args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy[:10]


def test_public_names_resolve_on_first_use():
    import archlint

    assert {"lint", "lint_many", "Plan", "Report", "Severity"} <= set(dir(archlint))
    from archlint.api import lint
    from archlint.findings import Severity

    assert archlint.lint is lint and archlint.Severity is Severity
    with pytest.raises(AttributeError, match="no_such_name"):
        archlint.no_such_name  # noqa: B018
