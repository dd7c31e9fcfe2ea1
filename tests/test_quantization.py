"""Quantization preview: transformers' own quantizer on the meta model is the oracle."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from support import config, lint_cached

from archlint import Plan, lint

GEMMA = config("google__gemma-4-E2B-it")
GPT_OSS = config("openai__gpt-oss-20b")


def _meta_model(folder: str):
    """The model class config.json names, built on meta the way from_pretrained builds it."""
    import transformers
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(folder)
    cls = getattr(transformers, cfg.architectures[0])
    with torch.device("meta"):
        return cls._from_config(cfg, dtype=torch.bfloat16)


def test_bnb_4bit_on_gemma4_quantizes_exactly_what_transformers_replaces():
    """Independently of archlint: transformers' default skip list and its bitsandbytes
    replacement on a meta Gemma-4 E2B, compared module for module."""
    bnb = pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig
    from transformers.integrations import replace_with_bnb_linear
    from transformers.quantizers.base import HfQuantizer

    model = _meta_model(GEMMA)
    skip = HfQuantizer.get_modules_to_not_convert(model, None, model._keep_in_fp32_modules)
    linears = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    wrappers = [n for n, m in model.named_modules() if type(m).__name__ == "Gemma4ClippableLinear"]
    replace_with_bnb_linear(model, modules_to_not_convert=skip,
                            quantization_config=BitsAndBytesConfig(load_in_4bit=True))
    expected = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    kept = sorted(n for n in linears if n not in set(expected))

    result = lint_cached(GEMMA, ("QUANT",), None, "bnb-4bit").results[0]
    preview = result.quantization
    assert preview.unavailable is None
    assert sorted(preview.quantized) == sorted(expected)
    assert len(preview.quantized) == 524
    assert len(wrappers) == 232 and all(f"{w}.linear" in preview.quantized for w in wrappers)
    assert preview.kept == kept == ["lm_head", "model.embed_audio.embedding_projection"]
    assert preview.trainable
    assert not [f for f in result.findings if f.code.startswith("QUANT")]


def test_bnb_4bit_footprint_adds_up():
    preview = lint_cached(GEMMA, ("QUANT",), None, "bnb-4bit").results[0].quantization
    total = preview.bytes
    assert total["after"] < total["before"]
    assert sum(total["by_dtype"].values()) == total["after"]
    assert sum(t["after"] for t in preview.towers) == pytest.approx(total["after"], abs=len(preview.towers))
    towers = {t["tower"] for t in preview.towers}
    assert {"model.language_model", "model.vision_tower", "model.audio_tower"} <= towers
    # nf4 is half a byte per quantized weight: transformers' own param_element_size
    assert total["by_dtype"]["nf4"] * 4 == sum(
        m.weight.numel() * 2 for m in _linears(GEMMA, preview.quantized))


def _linears(folder, paths):
    model = _meta_model(folder)
    return [model.get_submodule(p) for p in paths]


def test_gpt_oss_mxfp4_from_its_config_quantizes_exactly_the_experts():
    result = lint_cached(GPT_OSS, ("QUANT",)).results[0]
    preview = result.quantization
    assert preview.method == "mxfp4" and preview.pre_quantized
    assert preview.source == "config.json quantization_config"
    expected = [f"model.layers.{i}.mlp.experts.{p}" for i in range(24) for p in ("gate_up_proj", "down_proj")]
    assert preview.quantized_parameters == expected
    assert preview.quantized == [f"model.layers.{i}.mlp.experts" for i in range(24)]
    assert not preview.trainable
    assert preview.bytes["by_dtype"]["mxfp4"] > 0
    # without a plan nothing is trained: no QUANT003
    assert not [f for f in result.findings if f.code == "QUANT003"]


def test_gpt_oss_lora_on_experts_is_quant003_naming_dequantize():
    plan = json.dumps({"target_parameters": ["mlp.experts.gate_up_proj"]})
    result = lint_cached(GPT_OSS, ("QUANT003",), plan).results[0]
    [finding] = [f for f in result.findings if f.code == "QUANT003"]
    assert str(finding.severity) == "error"
    assert set(finding.paths) == {f"model.layers.{i}.mlp.experts" for i in range(24)}
    assert finding.details["config_key"] == "quantization_config.dequantize"
    assert finding.details["quantized_parameters"] == [f"model.layers.{i}.mlp.experts.gate_up_proj" for i in range(24)]
    assert "Mxfp4Config(dequantize=True)" in finding.fix.detail


def test_gpt_oss_attention_only_plan_is_still_refused_by_trainer():
    plan = json.dumps({"target_modules": ["q_proj", "v_proj"]})
    result = lint_cached(GPT_OSS, ("QUANT003",), plan).results[0]
    [finding] = [f for f in result.findings if f.code == "QUANT003"]
    assert finding.paths == ("",)
    assert "Trainer" in finding.message


def test_gpt_oss_dequantized_is_trainable_and_quiet():
    plan = Plan.from_mapping({"target_parameters": ["mlp.experts.gate_up_proj"]}, source="flags")
    dequantize = _fixture("quantization/mxfp4-dequantize.json")
    result = lint(GPT_OSS, select=["QUANT"], plan=plan, quantization=dequantize).results[0]
    assert result.quantization.trainable
    assert result.quantization.quantized == []
    assert not result.findings


def _fixture(rel: str) -> str:
    from support import REPO

    return str(REPO / "fixtures" / rel)


def test_without_bitsandbytes_the_preview_says_what_it_could_not_check(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    result = lint(config("meta-llama__Llama-3.1-8B"), select=["QUANT"], quantization="bnb-4bit").results[0]
    assert result.error is None and not result.rule_errors
    assert "bitsandbytes is not installed" in result.quantization.unavailable
    assert result.quantization.quantized == []
    assert not result.findings
    assert result.to_dict()["quantization"]["unavailable"]


def test_user_skip_list_that_drops_defaults_is_quant002():
    skip_vision = _fixture("quantization/bnb-4bit-skip-vision.json")
    result = lint(GEMMA, select=["QUANT002"], quantization=skip_vision).results[0]
    [finding] = result.findings
    assert set(finding.paths) == {"lm_head", "model.embed_audio.embedding_projection"}
    assert finding.details["entries_keeping_nothing"] == ["vision_tower", "audio_tower"]
    assert '"model.vision_tower"' in finding.fix.detail and '"lm_head"' in finding.fix.detail


def test_bad_quantization_values_are_usage_errors(tmp_path):
    from archlint.errors import UsageError

    with pytest.raises(UsageError, match="expected one of bnb-4bit"):
        lint(GEMMA, quantization="int3")
    bad = tmp_path / "q.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match="quant_method"):
        lint(GEMMA, quantization=str(bad))


def test_cli_prints_the_footprint_table_and_json_carries_it():
    from click.testing import CliRunner

    from archlint.cli import main

    runner = CliRunner()
    text = runner.invoke(main, ["check", GPT_OSS, "--select", "QUANT", "--no-color", "--fail-on", "never"])
    assert text.exit_code == 0, text.output
    assert "quantization mxfp4" in text.output and "not trainable" in text.output
    out = runner.invoke(main, ["check", GPT_OSS, "--select", "QUANT", "--format", "json", "--fail-on", "never"])
    doc = json.loads(out.output)
    q = doc["results"][0]["quantization"]
    assert q["method"] == "mxfp4" and len(q["quantized"]) == 24
    assert set(q["bytes"]) == {"before", "after", "by_dtype"}


def test_peft_runs_on_the_quantized_copy_for_trainable_methods():
    pytest.importorskip("bitsandbytes")
    plan = json.dumps({"target_modules": "all-linear"})
    result = lint_cached(config("meta-llama__Llama-3.1-8B"), ("QUANT",), plan, "bnb-4bit").results[0]
    verdict = result.quantization.peft
    assert verdict["ok"] is True and len(verdict["modules"]) == 224  # every Linear4bit but the kept lm_head
    assert set(verdict["modules"]) == set(result.quantization.quantized)
    assert not [f for f in result.findings if f.code == "QUANT003"]


def test_fp8_conversions_leave_transformers_experts_class_as_they_found_it():
    """transformers' FP8 integration wraps its experts class again for every experts module
    it replaces; archlint undoes that after each conversion, so a second conversion in the
    process (the preview runs two, a process may lint many models) is neither slower nor
    different."""
    from transformers.integrations.finegrained_fp8 import FP8Experts
    from transformers.quantizers.auto import AutoHfQuantizer

    from archlint.quantize.oracle import _EXPERTS_CLASS_ATTRIBUTES, run_quantizer
    from archlint.quantize.request import config_quantization

    model = _meta_model(config("deepseek-ai__DeepSeek-V3"))
    qconfig = AutoHfQuantizer.merge_quantization_configs(dict(config_quantization(model.config)), None)
    before = {k: vars(FP8Experts).get(k) for k in _EXPERTS_CLASS_ATTRIBUTES}
    runs = [run_quantizer(model, qconfig, pre_quantized=True) for _ in range(2)]
    assert {k: vars(FP8Experts).get(k) for k in _EXPERTS_CLASS_ATTRIBUTES} == before
    assert runs[0].quantized_parameters == runs[1].quantized_parameters
    experts = [m for n, m in runs[1].model.named_modules() if n.endswith("mlp.experts")]
    assert len(experts) == 58 and all(isinstance(m, FP8Experts) and m.has_gate and not m.has_bias for m in experts)


def test_the_notes_of_the_quantizer_do_not_depend_on_what_ran_before_or_on_quiet():
    """transformers says some things once per process (``warning_once``) and archlint keeps the
    libraries quiet outside ``--debug``; neither may change a report's notes."""
    from transformers import AutoConfig

    from archlint.quantize.oracle import environment_verdict
    from archlint.quiet import quiet_libraries

    qconfig = AutoConfig.from_pretrained(config("deepseek-ai__DeepSeek-V3")).quantization_config
    first = environment_verdict(qconfig, pre_quantized=True)
    again = environment_verdict(qconfig, pre_quantized=True)
    with quiet_libraries():
        quiet = environment_verdict(qconfig, pre_quantized=True)
    assert first == again == quiet
    assert any("requires a GPU or XPU" in note for note in first)  # transformers' own words, every time
