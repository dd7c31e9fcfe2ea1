"""GATE001-003 on real configs: the variant, router and output gate read from behaviour."""

from __future__ import annotations

import pytest
from support import config, findings, lint_cached

from archlint.findings import Confidence, Severity

LLAMA = config("meta-llama__Llama-3.1-8B")
QWEN3 = config("Qwen__Qwen3-8B")
GEMMA3 = config("google__gemma-3-1b-it")
GPT_OSS = config("openai__gpt-oss-20b")
GEMMA4_26B = config("google__gemma-4-26B-A4B")
DEEPSEEK = config("deepseek-ai__DeepSeek-V3")
MIXTRAL = config("mistralai__Mixtral-8x7B-v0.1")
QWEN3_MOE = config("Qwen__Qwen3-30B-A3B")


def _at(target, code, path):
    hits = [f for f in findings(target, code) if path in f.paths]
    assert len(hits) == 1, [f.pattern for f in findings(target, code)]
    return hits[0]


def test_llama_and_qwen_mlps_are_canonical_swiglu_info():
    for target, n in ((LLAMA, 32), (QWEN3, 36)):
        found = findings(target, "GATE001")
        assert {p for f in found for p in f.paths} == {f"model.layers.{i}.mlp" for i in range(n)}
        assert {f.severity for f in found} == {Severity.INFO}
        assert all(f.details["variant"] == "SwiGLU" and f.details["canonical"] for f in found)
        assert all("LigerSwiGLUMLP" in f.fix.detail for f in found)


def test_gemma_mlp_is_tanh_geglu_warning():
    f = _at(GEMMA3, "GATE001", "model.layers.0.mlp")
    assert f.severity == Severity.WARNING
    assert (f.details["activation"], f.details["fused"]) == ("gelu_tanh", False)
    assert "LigerGEGLUMLP" in f.fix.detail


def test_gpt_oss_experts_are_clamped_fused_interleaved_swiglu_warning():
    f = _at(GPT_OSS, "GATE001", "model.layers.0.mlp.experts")
    d = f.details
    assert f.severity == Severity.WARNING and f.confidence == Confidence.MEDIUM
    assert (d["activation"], d["fused"], d["layout"], d["gate"]) == (
        "swish(alpha=1.702)", True, "interleaved", "gate_up_proj")
    assert d["clamps"] == [["gate", None, 7.0], ["up", -7.0, 7.0]] and d["up_offset"] == 1.0
    assert "leave unpatched" in f.fix.title
    # the MoE block around the experts is not reported a second time
    assert not any("model.layers.0.mlp" in f.paths for f in findings(GPT_OSS, "GATE001"))


@pytest.mark.slow
def test_gate003_flags_gemma4_and_deepseek_routers_not_mixtral_or_qwen():
    gemma = _at(GEMMA4_26B, "GATE003", "model.language_model.layers.0.router")
    assert gemma.module_class == "Gemma4TextRouter"
    assert "normalises its input" in gemma.details["extras"]
    assert "uses param `per_expert_scale`" in gemma.details["extras"]
    deepseek = _at(DEEPSEEK, "GATE003", "model.layers.3.mlp.gate")
    assert "uses buffer `e_score_correction_bias`" in deepseek.details["extras"]
    assert "sigmoid scores" in deepseek.details["extras"]
    assert not any(p.startswith("model.layers.2.") for p in deepseek.paths)  # dense layers have no router
    assert findings(MIXTRAL, "GATE003") == []
    assert findings(QWEN3_MOE, "GATE003") == []
    assert findings(GPT_OSS, "GATE003") == []  # Linear + top-k + softmax of the top values


def test_gate002_finds_qwen3_next_output_gate_and_nothing_on_llama():
    result = lint_cached("qwen3_next", ("GATE002",)).results[0]
    found = [f for f in result.findings if f.code == "GATE002"]
    assert len(found) == 1 and found[0].details["gate_projection"] == "q_proj"
    assert found[0].details["activation"] == "sigmoid"
    assert "model.layers.3.self_attn" in found[0].paths and "model.layers.0.self_attn" not in found[0].paths
    assert findings(LLAMA, "GATE002") == []


def test_gate003_reads_phimoe_sparsemixer_and_ignores_a_unit_scale():
    phimoe = _at(config("microsoft__Phi-mini-MoE-instruct"), "GATE003", "model.layers.0.mlp.router")
    assert "selects experts by max/argmax rather than top-k" in phimoe.details["extras"]
    assert "random jitter" in phimoe.details["extras"]
    # DeepSeek-V2-Lite routes greedily (softmax + top-k) and scales by routed_scaling_factor = 1.0: plain
    assert findings(config("deepseek-ai__DeepSeek-V2-Lite"), "GATE003") == []


def test_stacked_experts_in_transformers_own_layout_are_info():
    """Qwen3-MoE's experts: SiLU on the first half of one stacked gate_up_proj, the layout
    transformers stores every fused MoE in -- info, not a warning on every MoE."""
    f = _at(QWEN3_MOE, "GATE001", "model.layers.0.mlp.experts")
    d = f.details
    assert (d["activation"], d["fused"], d["layout"], d["clamps"]) == ("silu", True, "halves", [])
    assert f.severity == Severity.INFO
    assert "the layout transformers stores every fused MoE in" in f.message


def test_a_one_sided_clamp_is_printed_as_the_bound_it_has():
    f = _at(GPT_OSS, "GATE001", "model.layers.0.mlp.experts")
    assert "gate clamped to at most 7 (no lower bound)" in f.message
    assert "up clamped to [-7, 7]" in f.message
    assert "-inf" not in f.message
