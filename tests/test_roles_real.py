"""Roles on architectures nobody tuned for: Qwen3-Next and Nemotron-H (transformers'
default configs), the false alarms gone and the true findings kept."""

from __future__ import annotations

from support import lint_cached

from archlint.findings import Confidence, Severity

def _findings(target, code=None):
    result = lint_cached(target).results[0]
    assert result.error is None, result.error
    return [f for f in result.findings if code is None or f.code == code]

def _paths(target, code):
    return {p for f in _findings(target, code) for p in f.paths}

# -- Qwen3-Next -----------------------------------------------------------------------------

def test_qwen3_next_q_proj_is_query_and_gate_not_gate_and_up():
    assert not any("self_attn.q_proj" in p for p in _paths("qwen3_next", "LORA005"))
    gate = _findings("qwen3_next", "GATE002")
    assert len(gate) == 1 and gate[0].details["gate_projection"] == "q_proj"
    roles = {(r["part"], r["role"]) for r in gate[0].details["roles"]}
    assert roles == {("0", "q"), ("1", "output_gate")}

def test_qwen3_next_k_and_v_are_not_routers():
    routers = _paths("qwen3_next", "LORA007")
    assert routers and all(p.endswith(".mlp.gate") for p in routers)
    excluded = [line for f in _findings("qwen3_next", "LORA007") for line in f.fix.detail.splitlines()
                if "exclude_modules=" in line]
    assert not any("k_proj" in line or "v_proj" in line for line in excluded)

def test_qwen3_next_true_findings_stay():
    norm = next(f for f in _findings("qwen3_next", "NORM001") if "model.layers.0.input_layernorm" in f.paths)
    assert norm.details["offset"] == 1
    rerouted = _paths("qwen3_next", "LORA008")
    assert {"model.layers.0.mlp.shared_expert.gate_proj", "model.layers.0.mlp.shared_expert.up_proj",
            "model.layers.0.mlp.shared_expert.down_proj"} <= rerouted

def test_qwen3_next_shared_expert_gate_and_gated_norm():
    gated = _findings("qwen3_next", "GATE004")
    assert len(gated) == 1 and "model.layers.0.mlp.shared_expert_gate" in gated[0].paths
    assert gated[0].details["branch"] == "shared_expert.down_proj"
    norm = next(f for f in _findings("qwen3_next", "NORM001") if "model.layers.0.linear_attn.norm" in f.paths)
    assert norm.details["gate"] == "silu" and "gated" in norm.message

# -- Nemotron-H -----------------------------------------------------------------------------

def test_nemotron_h_no_glu_from_the_router_sigmoid_and_no_qkv_in_mamba():
    assert _findings("nemotron_h", "GATE001") == []
    assert not any(p.endswith("mixer.in_proj") for p in _paths("nemotron_h", "LORA005"))

def test_nemotron_h_true_findings_stay():
    assert any(p.endswith("mixer.experts") for p in _paths("nemotron_h", "LORA006"))
    router = _findings("nemotron_h", "GATE003")
    assert router and all(p.endswith("mixer.gate") for p in router[0].paths)
    assert "sigmoid scores" in router[0].details["extras"]

def test_nemotron_h_gated_norm_named_gated_and_no_contradicted_reading():
    gated = next(f for f in _findings("nemotron_h", "NORM001") if any(p.endswith("mixer.norm") for p in f.paths))
    assert gated.details["gate"] == "silu" and gated.details["gate_before_norm"] is True
    assert gated.details["group_size"] and "gated" in gated.message and "Llama convention" not in gated.message
    for f in _findings("nemotron_h", "NORM001"):
        check = f.details.get("numeric_check")
        if check and not check["matches_reference"]:
            assert f.confidence == Confidence.LOW and f.severity == Severity.INFO and "unread" in f.message
