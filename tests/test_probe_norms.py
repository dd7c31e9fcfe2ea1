"""NORM001-003 read norm semantics from behaviour; each reading is checked here by running
that one module on the CPU against the textbook formula written out independently."""

from __future__ import annotations

import pytest
import torch
from support import config, facts_cached, findings

from archlint.findings import Confidence, Severity
from archlint.probe.numeric import cpu_copy

LLAMA = config("meta-llama__Llama-3.1-8B")
QWEN3 = config("Qwen__Qwen3-8B")
GEMMA2 = config("google__gemma-2-9b-it")
GEMMA3 = config("google__gemma-3-1b-it")
GEMMA4 = config("google__gemma-4-E2B-it")
GPT_OSS = config("openai__gpt-oss-20b")
ZOO = "fixtures/zoo/norms.py"


def _finding_at(target: str, code: str, path: str):
    hits = [f for f in findings(target, code) if path in f.paths]
    assert len(hits) == 1, (path, [f.pattern for f in findings(target, code)])
    return hits[0]


def _module(target: str, path: str):
    return facts_cached(target).graph.info(path).module


def _textbook(x, w, eps, offset, cast_before_scale):
    """RMSNorm as papers and model cards write it: fp32 statistics, then the convention."""
    h = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    if w is None:
        return h.to(x.dtype)
    if cast_before_scale:
        return (w + offset) * h.to(x.dtype)
    return (h * (w.float() + offset)).to(x.dtype)


def _check_numerically(target: str, path: str, details: dict):
    module = cpu_copy(_module(target, path))
    assert module is not None
    w = getattr(module, "weight", None)
    width = module.weight.shape[0] if w is not None else 64
    x = (torch.randn(2, 5, width, generator=torch.Generator().manual_seed(7)) * 4).bfloat16()
    with torch.no_grad():
        expected = _textbook(x, w, details["eps"], details["offset"], details["cast_before_scale"])
        assert torch.equal(module(x), expected)


CASES = [
    # target, path, offset, cast_before_scale, severity, equivalent_to
    (LLAMA, "model.norm", 0, True, Severity.INFO, None),
    (LLAMA, "model.layers.0.input_layernorm", 0, True, Severity.INFO, None),
    (QWEN3, "model.layers.0.self_attn.q_norm", 0, True, Severity.INFO, None),
    (GEMMA2, "model.norm", 1, False, Severity.WARNING, None),
    (GEMMA3, "model.layers.0.post_feedforward_layernorm", 1, False, Severity.WARNING, None),
    # torch 2.13's nn.RMSNorm multiplies by w in fp32 and casts after: Gemma-4 and gpt-oss are bit-exact with it.
    (GEMMA4, "model.language_model.norm", 0, False, Severity.INFO, "torch.nn.RMSNorm"),
    (GPT_OSS, "model.norm", 0, False, Severity.INFO, "torch.nn.RMSNorm"),
]


@pytest.mark.parametrize(("target", "path", "offset", "cast_before", "severity", "equivalent"), CASES,
                         ids=lambda v: v.rsplit("/", 1)[-1] if isinstance(v, str) else None)
def test_norm001_semantics_of_real_norms(target, path, offset, cast_before, severity, equivalent):
    f = _finding_at(target, "NORM001", path)
    d = f.details
    assert (d["offset"], d["cast_before_scale"], d["compute_dtype"], d["has_weight"]) == (
        offset, cast_before, "float32", True)
    assert d["eps_inside_sqrt"] is True and d["equivalent_to"] == equivalent
    assert f.severity == severity and f.confidence == Confidence.HIGH
    mode = "llama" if cast_before else "gemma"
    assert f"offset={float(offset)}, casting_mode='{mode}'" in f.fix.detail
    _check_numerically(target, path, d)


def test_gemma4_weightless_norms_are_norm002_and_read_as_rms():
    flagged = {p for f in findings(GEMMA4, "NORM002") for p in f.paths}
    assert "model.language_model.layers.0.self_attn.v_norm" in flagged
    f = _finding_at(GEMMA4, "NORM002", "model.language_model.layers.0.self_attn.v_norm")
    assert f.details["has_weight"] is False and "elementwise_affine=False" in f.fix.detail
    _check_numerically(GEMMA4, "model.language_model.layers.0.self_attn.v_norm", f.details)


@pytest.mark.parametrize(("name", "path", "offset", "mode", "severity", "equivalent"), [
    ("OffsetRmsNormModel", "norm", 1, "gemma", Severity.WARNING, None),
    ("LlamaStyleNormModel", "layers.0.norm", 0, "llama", Severity.INFO, None),
    ("TorchEquivalentNormModel", "layers.1.norm", 0, "gemma", Severity.INFO, "torch.nn.RMSNorm"),
])
def test_norm001_on_hand_written_norms(name, path, offset, mode, severity, equivalent):
    target = f"{ZOO}:{name}"
    f = _finding_at(target, "NORM001", path)
    assert (f.details["offset"], f.details["equivalent_to"], f.severity) == (offset, equivalent, severity)
    assert (f.details["liger"]["offset"], f.details["liger"]["casting_mode"]) == (float(offset), mode)
    _check_numerically(target, path, f.details)


def test_weightless_zoo_norm_computes_in_the_input_dtype():
    target = f"{ZOO}:WeightlessNormModel"
    f = _finding_at(target, "NORM002", "layers.0.v_norm")
    assert f.details["compute_dtype"] == "bfloat16" and "casting_mode='none'" in f.fix.detail
    module = cpu_copy(_module(target, "layers.0.v_norm"))
    x = torch.randn(1, 3, 8).bfloat16()
    assert torch.equal(module(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + f.details["eps"]))
    assert f.severity == Severity.WARNING
    assert _finding_at(target, "NORM001", "layers.0.v_norm").severity == Severity.WARNING


def test_llama_has_no_warning_or_error():
    assert [f.code for f in findings(LLAMA) if f.severity >= Severity.WARNING] == []


def test_weightless_norm_that_casts_back_follows_the_llama_convention():
    """Upcast, normalise, cast back, no weight (FalconMamba's b/c/dt norms): NORM001 reads the
    Llama convention (info); the missing weight is NORM002's warning, said once."""
    target = f"{ZOO}:UpcastWeightlessNormModel"
    f = _finding_at(target, "NORM001", "layers.0.norm")
    assert (f.details["compute_dtype"], f.details["has_weight"], f.severity) == ("float32", False, Severity.INFO)
    assert f.details["liger"]["casting_mode"] == "llama" and f.details["liger"]["elementwise_affine"] is False
    assert _finding_at(target, "NORM002", "layers.0.norm").severity == Severity.WARNING
    _check_numerically(target, "layers.0.norm", f.details)
