"""Property: whatever a config.json holds, ``lint()`` returns a result, in time.

Hypothesis mutates the bundled real configs (tests/config_mutations.py: type swaps, extreme
and negative numbers, NaN, deletions, nesting to 10,000 levels, Unicode, other model types)
and lints each one the way a user would. For every example:

* ``lint()`` does not raise;
* it returns within the target's time limit (plus a second of slack);
* the result has a built model (and its findings) or an error of a documented kind.

500 examples run with one cheap rule (ATTN001): the property is about reading and building
whatever the config holds, which every rule selection shares, and the build is the cost
(~0.1 s each with the bases cut to 2 layers). A smaller set runs every rule, so that no rule
is left out of the property. benchmarks/fuzz_configs.py runs 10,000 (docs/errors.md).
"""

from __future__ import annotations

import time

import pytest
from config_mutations import mutated_configs
from hypothesis import HealthCheck, given, settings

from archlint import lint
from archlint.errors import KINDS

TIMEOUT = 20.0
_SETTINGS = dict(deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))


def check(text: str, tmp_path_factory, select) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "config.json").write_text(text, encoding="utf-8")
    start = time.monotonic()
    report = lint(str(folder), select=select, timeout=TIMEOUT)  # raising fails the property
    assert time.monotonic() - start < TIMEOUT + 1
    [result] = report.results
    if result.error is None:
        assert result.model is not None and isinstance(result.findings, list)
    else:
        assert result.error.kind in KINDS, result.error.to_dict()
        assert result.error.kind != "internal", result.error.message
        assert "\n" not in result.error.message


@pytest.mark.slow
@settings(max_examples=500, **_SETTINGS)
@given(text=mutated_configs(depth=2))
def test_mutated_configs_never_escape_or_hang(text, tmp_path_factory):
    check(text, tmp_path_factory, select=["ATTN001"])


@settings(max_examples=15, **_SETTINGS)
@given(text=mutated_configs(depth=1))
def test_mutated_configs_with_every_rule(text, tmp_path_factory):
    check(text, tmp_path_factory, select=None)
