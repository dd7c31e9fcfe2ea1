"""archlint's predictions equal what get_peft_model does (CI-sized benchmarks/peft_agreement.py).

Every natively buildable bundled real config and 30 more model types (dense, MoE, multimodal, encoder-decoder,
hybrid/SSM) x four recipes: the verdict, the exception, the wrapped modules and
parameters, and the trainable count -- from archlint's engine (PEFT on a copy of the
meta model) and from its reimplementation (what archlint uses without PEFT) -- are
asserted equal to ``get_peft_model`` on a fresh copy of the same meta model.
"""

from __future__ import annotations

import copy
import warnings

import pytest
from support import CONFIGS

from archlint.lora import Plan, reimplementation
from archlint.lora.evaluate import predict
from archlint.lora.recipes import peft_default_targets


def _native(folder) -> bool:
    import json

    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return json.loads((folder / "config.json").read_text()).get("model_type") in CONFIG_MAPPING_NAMES


RECIPES = {
    "peft-default": None,
    "seven": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": "all-linear",
}
MODEL_TYPES = (  # 30 types, none of them already covered by a bundled config
    # dense decoders
    "gpt_neox", "falcon", "opt", "cohere", "olmo2", "starcoder2", "granite", "stablelm",
    # MoE (converted by PEFT and not)
    "qwen2_moe", "olmoe", "granitemoe", "deepseek_v2", "phimoe", "glm4_moe", "afmoe",
    # multimodal
    "qwen2_vl", "idefics3", "clip", "siglip", "paligemma",
    # encoders
    "bert", "roberta",
    # hybrid / SSM
    "mamba", "mamba2", "jamba", "falcon_h1", "zamba2", "bamba", "lfm2", "qwen3_next",
)
REAL = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and _native(p))


def _truth(model, target_modules) -> tuple:
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            lora = LoraConfig(r=8, target_modules=target_modules)
            pm = get_peft_model(copy.deepcopy(model), lora, low_cpu_mem_usage=True)
        except Exception as e:
            return (False, type(e).__name__, str(e), (), (), 0)
    tuner = pm.base_model
    return (True, None, None, tuple(sorted(tuner.targeted_module_names)), tuple(sorted(tuner.targeted_parameter_names)),
            pm.get_nb_trainable_parameters()[0])


def _key(outcome) -> tuple:
    return (outcome.ok, outcome.error_type, outcome.error_message, tuple(sorted(outcome.modules)),
            tuple(sorted(outcome.parameters)), outcome.trainable)


@pytest.mark.parametrize("target", [*(str(CONFIGS / n) for n in REAL), *MODEL_TYPES],
                         ids=[*REAL, *MODEL_TYPES])
def test_archlint_agrees_with_get_peft_model(target):
    from archlint.build import build
    from archlint.resolve import resolve

    model = build(resolve(target)).module
    default = peft_default_targets(getattr(getattr(model, "config", None), "model_type", None))
    checked = 0
    for name, targets in RECIPES.items():
        if name == "peft-default" and default is None:
            continue
        plan = Plan.from_mapping({"target_modules": targets} if targets else {}, source=f"recipe:{name}")
        truth = _truth(model, targets)  # on its own deep copy of the meta model
        assert _key(predict(model, plan)) == truth, f"engine, {name}"
        assert _key(reimplementation.run(model, plan, default_targets=default)) == truth, f"reimplementation, {name}"
        checked += 1
    assert checked >= 3
