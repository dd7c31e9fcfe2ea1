"""DIST001's severity follows what accelerate's own FSDP policy code does with
``_no_split_modules`` on the meta model: it raises for a class the model lacks (error); a
missing list makes it wrap no block (warning, not error)."""

from __future__ import annotations

import types

import pytest
from accelerate.utils.dataclasses import FullyShardedDataParallelPlugin
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


@pytest.mark.parametrize(("target", "severity"), [(NO_LIST, Severity.WARNING), (ABSENT, Severity.ERROR)])
def test_severity_is_what_accelerate_does(target, severity):
    (finding,) = findings(target, "DIST001")
    assert finding.paths == ("",)
    assert finding.severity == severity
    raised = _accelerate_raises(meta_model(target))
    assert bool(raised) == (severity == Severity.ERROR)
    assert finding.details["fsdp_error"] == (raised or None)
    if raised:
        assert raised in finding.message
    else:
        assert "wraps no block" in finding.message and finding.details["fsdp_wrapped_classes"] == []
