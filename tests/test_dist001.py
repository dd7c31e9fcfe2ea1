"""DIST001's severity follows what accelerate's own FSDP policy code does with
``_no_split_modules`` on the meta model: up to accelerate 1.15 it raised for a class the
model lacks (error; 1.16 skips the name); a missing list makes it wrap no block (warning,
not error)."""

from __future__ import annotations

import types
from importlib.metadata import version

import pytest
from accelerate.utils.dataclasses import FullyShardedDataParallelPlugin
from packaging.version import Version
from support import findings, meta_model
from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

from archlint.findings import Severity

NO_LIST = "fixtures/zoo/hf_tiny.py:NoCheckpointing"
ABSENT = "fixtures/zoo/hf_tiny.py:AbsentNoSplitClass"


def _accelerate_raises(model) -> str:
    plugin = types.SimpleNamespace(auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=None)
    try:
        FullyShardedDataParallelPlugin.set_auto_wrap_policy(plugin, model)
    except ValueError as e:
        return str(e)
    return ""


@pytest.mark.parametrize("target", [NO_LIST, ABSENT])
def test_severity_is_what_accelerate_does(target):
    """Error where the installed accelerate's policy raises: on a name of an absent class up
    to accelerate 1.15; 1.16 skips such names (and then wraps no block here: a warning)."""
    (finding,) = findings(target, "DIST001")
    assert finding.paths == ("",)
    raised = _accelerate_raises(meta_model(target))
    assert finding.severity == (Severity.ERROR if raised else Severity.WARNING)
    if target == NO_LIST:
        assert not raised
    if target == ABSENT and Version(version("accelerate")) < Version("1.16"):
        assert raised
    assert finding.details["fsdp_error"] == (raised or None)
    if raised:
        assert raised in finding.message
    else:
        assert "wraps no block" in finding.message and finding.details["fsdp_wrapped_classes"] == []
