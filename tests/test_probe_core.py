"""The probe itself: operand roles, one probe per signature, failures lower confidence,
time reported, wrappers and subclasses read by behaviour."""

from __future__ import annotations

import torch
from support import config, facts_cached, findings, lint_cached

from archlint.findings import Confidence
from archlint.probe.run import cache_key
from archlint.probe.trace import Operand, Recorder

GEMMA4 = config("google__gemma-4-E2B-it")
LLAMA = config("meta-llama__Llama-3.1-8B")


def test_recorder_names_parameters_inputs_and_scalars():
    with torch.device("meta"):
        linear = torch.nn.Linear(4, 3)
    x = torch.empty(2, 4, device="meta")
    known = {p._cdata: Operand("param", n) for n, p in linear.named_parameters()}
    recorder = Recorder({**known, x._cdata: Operand("input", "0")})
    with recorder:
        linear(x).clamp(max=2.0)
    ops = recorder.trace.ops
    addmm = next(op for op in ops if op.name == "addmm")
    assert addmm.args[0].name == "bias" and recorder.trace.origin(addmm.args[2]).name == "weight"
    assert ops[-1].name == "clamp" and ops[-1].scalars == [2.0]
    roots = recorder.trace.roots(Operand("op", op=ops[-1].index))
    assert roots == {("param", "weight"), ("param", "bias"), ("input", "0")}


def test_identical_layers_cost_one_probe():
    result = lint_cached(LLAMA).results[0]
    graph = facts_cached(LLAMA).graph
    norms = [graph.info(f"model.layers.{i}.input_layernorm").module for i in range(32)]
    assert len({cache_key(m) for m in norms}) == 1
    assert result.timings["probe"] > 0  # what --debug prints


def test_a_failing_probe_lowers_confidence_and_keeps_the_finding():
    result = lint_cached("fixtures/zoo/norms.py:UnprobeableNormModel").results[0]
    assert not result.rule_errors
    [f] = [f for f in result.findings if f.code == "NORM001"]
    assert f.confidence == Confidence.LOW and f.details["semantics"] == "unprobed"
    assert f.paths == ("layers.0.norm", "layers.1.norm")


def test_gemma4_wrappers_name_their_clamps_and_stay_232():
    found = findings(GEMMA4, "LORA001")
    assert sum(f.count for f in found) == 232
    audio = next(f for f in found if "model.audio_tower.layers.0.self_attn.q_proj" in f.paths)
    assert "clamp to [`input_min`, `input_max`] on the input" in audio.message
    assert audio.details["extra_ops"] == ["clamp to [`input_min`, `input_max`] on the input",
                                          "clamp to [`output_min`, `output_max`] on the output"]
    assert audio.details["unwrap_safe"] is False


def test_fused_projections_confirmed_by_the_split_after_them():
    phi3 = {f.pattern: f for f in findings(config("microsoft__Phi-3-mini-4k-instruct"), "LORA005")}
    assert phi3["model.layers.*.self_attn.qkv_proj"].details["split_after"] == 3
    assert phi3["model.layers.*.mlp.gate_up_proj"].details["split_after"] == 2
    assert phi3["model.layers.*.self_attn.qkv_proj"].confidence == Confidence.HIGH
    falcon = findings(config("tiiuae__falcon-180B-chat"), "LORA005")
    assert [f.details["split_after"] for f in falcon] == [3]
