"""Quantization skip lists archlint prints keep transformers' defaults: checked against
transformers' own bitsandbytes integration on the meta model."""

from __future__ import annotations

import ast
import copy
import re

import pytest
from support import CONFIGS, config, findings, lint_cached, meta_model
from torch import nn

from archlint.skip_list import bnb_skip_advice, converted_by_bnb, default_skip_modules

GEMMA4_E2B = config("google__gemma-4-E2B-it")
GEMMA4_26B = config("google__gemma-4-26B-A4B")
_SKIP_LIST = re.compile(r"(?:llm_int8_skip_modules|modules_to_not_convert)=(\[[^\]]*\])")


def _bnb_replaced(model: nn.Module, skip: list[str] | None) -> set[str]:
    """What transformers' bitsandbytes integration replaces on a copy of ``model`` with
    ``skip`` as the user's ``llm_int8_skip_modules``: the quantizer's own preprocessing."""
    import bitsandbytes as bnb
    from transformers import BitsAndBytesConfig
    from transformers.quantizers.auto import AutoHfQuantizer

    converted = copy.deepcopy(model)
    quantizer = AutoHfQuantizer.from_config(BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=skip),
                                            pre_quantized=False)
    quantizer._process_model_before_weight_loading(converted, device_map=None)
    return {name for name, m in converted.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


def test_gemma4_defaults_are_transformers_own_and_keep_lm_head():
    assert default_skip_modules(meta_model(GEMMA4_E2B)) == (
        "lm_head", "model.embed_audio.embedding_projection", "model.language_model.embed_tokens")


def test_embeddings_and_linear_subclasses_need_no_skip_entry():
    """bitsandbytes converts only modules whose type is nn.Linear (or Conv1D): a scaled
    embedding or a router subclassing nn.Linear is left as it is, so no list is advised."""
    gemma = meta_model(GEMMA4_E2B)
    assert bnb_skip_advice(gemma, ["model.language_model.embed_tokens"]) is None
    phimoe = meta_model(config("microsoft__Phi-mini-MoE-instruct"))
    assert bnb_skip_advice(phimoe, ["model.layers.0.mlp.router"]) is None


def test_gemma4_router_advice_is_what_the_quantizer_does():
    model = meta_model(GEMMA4_26B)
    routers = [p for p, m in model.named_modules() if p.endswith(".router") and "language_model" in p]
    advice = bnb_skip_advice(model, routers)
    assert advice is not None and advice.defaults[0] == "lm_head"
    assert set(advice.skip_list) >= set(default_skip_modules(model))
    assert set(advice.kept) == {f"{r}.proj" for r in routers}
    replaced_by_default = _bnb_replaced(model, None)
    replaced = _bnb_replaced(model, list(advice.skip_list))
    assert "lm_head" not in replaced and not replaced & set(advice.kept)
    assert replaced == replaced_by_default - set(advice.kept)  # nothing else changes
    assert set(converted_by_bnb(model, default_skip_modules(model))) == replaced_by_default
    # what the old advice, a bare list, did: lm_head quantized
    assert "lm_head" in _bnb_replaced(model, ["router"])


def test_gate003_on_gemma4_prints_the_full_list_and_a_trained_lora_exclusion():
    (finding,) = findings(GEMMA4_26B, "GATE003")
    detail = finding.fix.detail
    (listed,) = _SKIP_LIST.findall(detail)
    assert ast.literal_eval(listed)[:3] == ["lm_head", "model.embed_vision.embedding_projection",
                                           "model.language_model.embed_tokens"]
    assert "one fake training step ran clean (inject, forward, backward)" in detail


@pytest.mark.parametrize("folder", sorted(p.name for p in CONFIGS.iterdir() if p.is_dir()))
def test_no_printed_skip_list_is_shorter_than_the_defaults(folder):
    result = lint_cached(str(CONFIGS / folder)).results[0]
    if result.error is not None:
        return  # remote code without the flag: nothing printed
    lists = [ast.literal_eval(m) for f in result.findings if f.fix for m in _SKIP_LIST.findall(f.fix.detail)]
    if not lists:
        return
    defaults = set(default_skip_modules(meta_model(str(CONFIGS / folder))) or ())
    for listed in lists:
        assert set(listed) >= defaults, (folder, listed, defaults)
