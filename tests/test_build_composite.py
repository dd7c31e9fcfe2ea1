"""Bare model types whose default config is composite (text + vision sub-configs) build
the class that takes the whole config, as transformers' own Auto classes would."""

from __future__ import annotations

import pytest
from torch import nn

from archlint.build import build
from archlint.resolve import resolve


@pytest.mark.parametrize(
    ("model_type", "class_name", "tower"),
    [
        ("llama4", "Llama4ForConditionalGeneration", "vision_model"),
        ("qwen3_5", "Qwen3_5ForConditionalGeneration", "model.visual"),
        ("qwen3_5_moe", "Qwen3_5MoeForConditionalGeneration", "model.visual"),
    ],
)
def test_composite_default_config_builds_every_tower(model_type, class_name, tower):
    built = build(resolve(model_type))
    assert built.class_name == class_name
    names = dict(built.module.named_modules())
    assert tower in names
    assert any(name.endswith("embed_tokens") and "language_model" in name for name in names)


def test_text_only_class_gets_the_text_sub_config():
    """Where the only class is the causal LM of the text sub-config, it is built from that
    sub-config (transformers' AutoModelForCausalLM.from_config does the same swap)."""
    import transformers

    from archlint.build import _from_config

    spec = resolve("qwen3_5")
    spec.config.text_config.num_hidden_layers = 4
    model = _from_config_meta(_from_config, transformers.Qwen3_5ForCausalLM, spec)
    assert type(model).__name__ == "Qwen3_5ForCausalLM"
    assert model.config is spec.config.text_config


def _from_config_meta(make, cls, spec):
    import torch

    with torch.device("meta"):
        return make(cls, spec.config)


@pytest.mark.parametrize(("model_type", "class_name"), [("colqwen2", "ColQwen2ForRetrieval"),
                                                        ("pp_lcnet", "PPLCNetForImageClassification")])
def test_a_type_in_no_auto_table_builds_its_head_not_the_empty_shared_base(model_type, class_name):
    """The modeling module's `…PreTrainedModel` base takes the config too but holds no layer:
    every LoRA recipe was "refused" on an empty model."""
    built = build(resolve(model_type))
    assert built.class_name == class_name
    assert any(isinstance(m, nn.Linear) for m in built.module.modules())
