"""The rules on real published configs (fixtures/configs), with PEFT as the judge of fixes."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from support import CONFIGS, config, findings, lint_cached, meta_model, paths
from torch import nn

from archlint.findings import Severity

GEMMA4_E2B = config("google__gemma-4-E2B-it")
GEMMA4_26B = config("google__gemma-4-26B-A4B")
GEMMA4_31B = config("google__gemma-4-31B-it")
GPT_OSS = config("openai__gpt-oss-20b")


def _config_json(folder: str) -> dict:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


def _regexes(fix_detail: str) -> list[str]:
    return re.findall(r'target_modules=r"([^"]+)"', fix_detail)


# -- Gemma-4 E2B: the wrapper crash ------------------------------------------------------


def test_gemma4_lora001_is_exactly_the_232_clippable_linears_in_the_towers():
    model = meta_model(GEMMA4_E2B)
    wrappers = {n for n, m in model.named_modules() if type(m).__name__ == "Gemma4ClippableLinear"}
    assert len(wrappers) == 232
    flagged = paths(GEMMA4_E2B, "LORA001")
    assert flagged == wrappers
    assert all(p.startswith(("model.vision_tower.", "model.audio_tower.")) for p in flagged)
    assert not any("language_model" in p for p in flagged)
    # an error where a common recipe's names reach the wrapper (PEFT raises); info where only a
    # target naming it (the audio tower's `ffw_layer_1`, `linear_start`, `post`) would
    recipe_names = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for f in findings(GEMMA4_E2B, "LORA001"):
        named = {p.rsplit(".", 1)[-1] for p in f.paths}
        assert f.severity is (Severity.ERROR if named <= recipe_names else Severity.INFO), f.pattern
    assert {f.severity for f in findings(GEMMA4_E2B, "LORA001")} == {Severity.ERROR, Severity.INFO}


def test_gemma4_lora004_names_the_qkvo_collisions():
    """Each colliding name, with how many modules of which class it reaches per tower: pinned to
    the config's layer counts (text 35, whose last 20 share earlier layers' KV and have no k/v
    projections; vision 16; audio 12, attention only), and counted again on the meta model."""
    cfg = _config_json(GEMMA4_E2B)
    text, clip = cfg["text_config"], "Gemma4ClippableLinear"
    n_text, n_kv = text["num_hidden_layers"], text["num_hidden_layers"] - text["num_kv_shared_layers"]
    n_vision, n_audio = cfg["vision_config"]["num_hidden_layers"], cfg["audio_config"]["num_hidden_layers"]
    assert (n_text, n_kv, n_vision, n_audio) == (35, 15, 16, 12)
    language, vision, audio = "model.language_model", "model.vision_tower", "model.audio_tower"
    expected = {
        "q_proj": {language: {"Linear": n_text}, vision: {clip: n_vision}, audio: {clip: n_audio}},
        "k_proj": {language: {"Linear": n_kv}, vision: {clip: n_vision}, audio: {clip: n_audio}},
        "v_proj": {language: {"Linear": n_kv}, vision: {clip: n_vision}, audio: {clip: n_audio}},
        **{name: {language: {"Linear": n_text}, vision: {clip: n_vision}}
           for name in ("o_proj", "gate_proj", "up_proj", "down_proj")},
    }
    counted: dict = defaultdict(lambda: defaultdict(Counter))
    for path, module in meta_model(GEMMA4_E2B).named_modules():
        if (name := path.rpartition(".")[2]) in expected:
            counted[name][".".join(path.split(".")[:2])][type(module).__name__] += 1
    assert {name: {tower: dict(c) for tower, c in towers.items()} for name, towers in counted.items()} == expected

    by_name = {f.pattern: f for f in findings(GEMMA4_E2B, "LORA004")}
    assert set(by_name) == set(expected)
    for name, towers in expected.items():
        assert by_name[name].details["towers"] == towers, name
        assert by_name[name].severity == Severity.ERROR, name  # PEFT raises on the wrappers a recipe reaches


def test_gemma4_fix_regexes_work_in_peft_and_stay_in_the_language_model():
    from peft import LoraConfig, get_peft_model

    fix = findings(GEMMA4_E2B, "LORA001")[0].fix
    scoped, with_inner = _regexes(fix.detail)
    # The recipe that crashes today, for reference: PEFT's own error.
    with pytest.raises(ValueError, match="Gemma4ClippableLinear"):
        get_peft_model(meta_model(GEMMA4_E2B), LoraConfig(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))

    peft_model = get_peft_model(meta_model(GEMMA4_E2B), LoraConfig(r=8, target_modules=scoped))
    adapted = {n.removesuffix(".lora_A") for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert adapted and all(".language_model." in n for n in adapted)

    peft_model = get_peft_model(meta_model(GEMMA4_E2B), LoraConfig(r=8, target_modules=with_inner))
    adapted = {n.removesuffix(".lora_A") for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert any(n.endswith(".q_proj.linear") and ".vision_tower." in n for n in adapted)

    lora004_fix = findings(GEMMA4_E2B, "LORA004")[0].fix
    assert _regexes(lora004_fix.detail) == [scoped]


# -- MoE, sinks, fused, wide heads -----------------------------------------------------


def test_gemma4_26b_lora006_target_parameters_reach_every_expert_tensor():
    from peft import LoraConfig, get_peft_model

    (finding,) = findings(GEMMA4_26B, "LORA006")
    assert finding.severity == Severity.ERROR
    assert finding.paths == tuple(f"model.language_model.layers.{i}.experts" for i in range(30))
    entries = finding.details["target_parameters"]
    assert entries == ["experts.gate_up_proj", "experts.down_proj"]
    model = get_peft_model(meta_model(GEMMA4_26B), LoraConfig(r=4, target_modules=[], target_parameters=entries))
    wrapped = {n for n, m in model.named_modules() if type(m).__name__ == "ParamWrapper"}
    per_layer = {n.split(".experts")[0] for n in wrapped}
    assert len(per_layer) == 30  # every layer's experts, both tensors (nested wrappers)
    assert len(wrapped) == 60


def test_gpt_oss_experts_sinks_and_no_sdpa():
    assert paths(GPT_OSS, "LORA006") == {f"model.layers.{i}.mlp.experts" for i in range(24)}
    assert paths(GPT_OSS, "ATTN002") == {f"model.layers.{i}.self_attn" for i in range(24)}
    (sinks,) = findings(GPT_OSS, "LORA009")
    assert sinks.details["parameters"] == ["sinks"]


def test_phi3_fused_projections():
    assert {f.pattern for f in findings(config("microsoft__Phi-3-mini-4k-instruct"), "LORA005")} == {
        "model.layers.*.self_attn.qkv_proj", "model.layers.*.mlp.gate_up_proj",
    }


def test_gemma4_31b_wide_global_heads():
    """Exactly the full-attention layers of ``layer_types`` have 512-wide heads (the others 256)."""
    text = _config_json(GEMMA4_31B)["text_config"]
    full = [i for i, kind in enumerate(text["layer_types"]) if kind == "full_attention"]
    assert len(full) == 10 and (text["head_dim"], text["global_head_dim"]) == (256, 512)
    layers = meta_model(GEMMA4_31B).model.language_model.layers
    widths = [layer.self_attn.q_proj.out_features // text["num_attention_heads"] for layer in layers]
    assert widths == [512 if i in full else 256 for i in range(len(layers))]

    (finding,) = findings(GEMMA4_31B, "ATTN001")
    assert finding.paths == tuple(f"model.language_model.layers.{i}.self_attn" for i in full)
    assert finding.details["head_dim"] == 512
    assert finding.details["head_dims"] == [256, 512]


def test_gemma4_26b_no_split_modules_names_an_absent_audio_layer():
    (finding,) = findings(GEMMA4_26B, "DIST001")
    assert finding.details["absent"] == ["Gemma4AudioLayer"]


def test_moe_types_peft_converts_are_info_not_error():
    """PEFT 0.21 re-routes gate/up/down names to fused experts for qwen3_moe (checked against PEFT)."""
    from peft import LoraConfig, get_peft_model

    target = config("Qwen__Qwen3-30B-A3B")
    (finding,) = findings(target, "LORA006")
    assert finding.severity == Severity.INFO
    model = get_peft_model(meta_model(target), LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert any(type(m).__name__ == "ParamWrapper" for m in model.modules())


# -- what must stay quiet ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["meta-llama__Llama-3.1-8B", "mistralai__Mistral-7B-Instruct-v0.3", "Qwen__Qwen3-8B"])
def test_canonical_models_have_no_warning_or_error(name):
    loud = [f for f in findings(config(name)) if f.severity >= Severity.WARNING]
    assert loud == [], [(f.code, f.pattern) for f in loud]


@pytest.mark.parametrize("name", [
    "google__gemma-4-E2B-it", "llava-hf__llava-1.5-7b-hf", "Qwen__Qwen2.5-VL-7B-Instruct"])
def test_conv_patch_embeddings_are_never_experts(name):
    """Convolutions hold 3-D to 5-D weights, as stacked experts do; none of these models has
    experts, so LORA006 must say nothing, though each has convolutions it could mistake."""
    convs = {path: tuple(m.weight.shape) for path, m in meta_model(config(name)).named_modules()
             if isinstance(m, nn.modules.conv._ConvNd)}
    assert convs and all(len(shape) >= 3 for shape in convs.values())
    assert findings(config(name), "LORA006") == []


@pytest.mark.slow
def test_every_bundled_config_lints_or_asks_for_remote_code():
    for folder in sorted(p for p in CONFIGS.iterdir() if p.is_dir()):
        result = lint_cached(str(folder)).results[0]
        if result.error:
            assert result.error.kind == "remote-code", (folder.name, result.error.message)
        else:
            assert not result.rule_errors, (folder.name, result.rule_errors)
            assert result.model.parameters > 0
