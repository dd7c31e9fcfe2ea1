"""archlint.lora.targets answers "what does this target entry reach" exactly as PEFT does.

Plans, recipes, suppressions and per-module-ignores all use this one matcher, so it is
held equal to PEFT's own ``check_target_module_exists`` over names, suffixes, regexes,
``exclude_modules``, ``layers_to_transform``/``layers_pattern`` and ``modules_to_save``.
"""

from __future__ import annotations

import itertools

import pytest

from archlint.lora.targets import parameters_reached, reaches, written_entry, written_entry_reaches

KEYS = [
    "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "model.layers.12.self_attn.q_proj",
    "model.layers.3.mlp.down_proj", "model.vision_tower.blocks.2.attn.qkv", "model.vision_tower.blocks.2.attn.q_proj",
    "lm_head", "q_proj", "model.layers.0.self_attn.q_proj_extra", "model.embed_tokens",
]
CONFIGS = [
    {"target_modules": ["q_proj"]},
    {"target_modules": ["self_attn.q_proj", "down_proj"]},
    {"target_modules": ["proj"]},
    {"target_modules": r"model\.layers\.\d+\.self_attn\.q_proj"},
    {"target_modules": r"layers\.\d+"},
    {"target_modules": ["q_proj"], "exclude_modules": ["vision_tower.blocks.2.attn.q_proj"]},
    {"target_modules": ["q_proj", "down_proj"], "exclude_modules": r".*vision.*"},
    {"target_modules": ["q_proj"], "layers_to_transform": [0, 12]},
    {"target_modules": ["q_proj"], "layers_to_transform": 1, "layers_pattern": "layers"},
    {"target_modules": ["q_proj", "qkv"], "layers_to_transform": [2], "layers_pattern": ["blocks"]},
    {"target_modules": ["q_proj", "lm_head"], "modules_to_save": ["lm_head"]},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: repr(c))
def test_reaches_agrees_with_peft(config):
    peft = pytest.importorskip("peft")
    from peft.tuners.tuners_utils import check_target_module_exists

    lora = peft.LoraConfig(**config)
    for key in KEYS:
        expected = check_target_module_exists(lora, key)
        got = reaches(key, lora.target_modules, exclude=lora.exclude_modules,
                      layers_to_transform=lora.layers_to_transform, layers_pattern=lora.layers_pattern,
                      modules_to_save=lora.modules_to_save or ())
        # PEFT returns a match object, True/False, or a falsy marker for an excluded module
        excluded = type(expected).__name__ == "_ExcludedModule"
        assert (None if excluded else bool(expected)) == got, (config, key)


def test_a_written_entry_is_a_name_a_suffix_or_a_full_match_regex():
    assert written_entry("q_proj") == ("q_proj",)
    assert written_entry(r"re:a\.b") == r"a\.b"
    entries = ["q_proj", "self_attn.q_proj", r"re:model\.layers\.\d+\.self_attn\.q_proj"]
    for entry, key in itertools.product(entries, KEYS):
        assert written_entry_reaches(entry, key) == bool(reaches(key, written_entry(entry)))
    assert not written_entry_reaches("proj", "model.layers.0.self_attn.q_proj")


def test_target_parameters_reach_a_full_path_or_a_dotted_suffix():
    params = ["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj", "experts.gate_up_proj"]
    assert parameters_reached(params, ["experts.gate_up_proj"]) == (params[0], params[2])
    assert parameters_reached(params, ["up_proj"]) == ()  # a segment boundary, not a substring
