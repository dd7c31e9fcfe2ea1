"""The copy PEFT runs on (archlint.lora.oracle.fresh_copy): what copy.deepcopy gives, independent
of the linted model, faster.

PEFT mutates the model it is given (replaces children, freezes parameters, sets attributes and
hooks, sets ``config.pretraining_tp``); none of that may reach the model archlint lints, and
weight ties and shared modules must survive the copy as they survive deepcopy.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from support import config, meta_model
from torch import nn

from archlint.lora.oracle import fresh_copy

GEMMA4_E2B = config("google__gemma-4-E2B-it")
LLAMA = config("meta-llama__Llama-3.1-8B")
DEEPSEEK_V3 = config("deepseek-ai__DeepSeek-V3")
TIED = "gpt2"  # tie_word_embeddings: lm_head.weight is transformer.wte.weight


def _same_structure(a, b, pairs: dict[int, int], path: str = "model") -> None:
    """``a`` (one copy) and ``b`` (another) have the same shape everywhere, and the same sharing:
    an object seen twice in ``a`` is the same object twice in ``b``, and never one of the original's."""
    if id(a) in pairs:
        assert pairs[id(a)] == id(b), f"{path}: sharing differs"
        return
    pairs[id(a)] = id(b)
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        def layout(t):
            return t.shape, t.dtype, t.device, t.requires_grad, t.stride()

        assert layout(a) == layout(b), path
        return
    if isinstance(a, (dict,)):
        assert list(a) == list(b), f"{path}: keys differ"
        for k in a:
            _same_structure(a[k], b[k], pairs, f"{path}[{k!r}]")
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_structure(x, y, pairs, f"{path}[{i}]")
        return
    if isinstance(a, nn.Module):
        assert list(vars(a)) == list(vars(b)), f"{path}: attributes differ"
        for k in vars(a):
            _same_structure(vars(a)[k], vars(b)[k], pairs, f"{path}.{k}")
        return
    if hasattr(a, "to_dict"):  # a config
        assert a.to_dict() == b.to_dict(), path
        return
    if callable(a) or isinstance(a, (set, frozenset)):
        return
    assert a == b, path


@pytest.mark.parametrize("target", [GEMMA4_E2B, LLAMA, DEEPSEEK_V3, TIED])
def test_the_copy_is_what_deepcopy_gives(target):
    model = meta_model(target)
    fast, slow = fresh_copy(model), copy.deepcopy(model)
    _same_structure(fast, slow, {})
    originals = {id(x) for x in [*model.modules(), *model.parameters(), *model.buffers()]}
    assert not originals & {id(x) for x in [*fast.modules(), *fast.parameters(), *fast.buffers()]}
    assert fast.config is not model.config and fast.config.to_dict() == model.config.to_dict()
    # every module that held the original's config holds the copy's one config
    holders = {id(m.__dict__["config"]) for m in fast.modules() if m.__dict__.get("config") is not None}
    assert id(model.config) not in holders


def test_tied_weights_stay_tied_and_shared_modules_stay_shared():
    model = meta_model(TIED)
    assert model.lm_head.weight is model.transformer.wte.weight
    clone = fresh_copy(model)
    assert clone.lm_head.weight is clone.transformer.wte.weight
    assert clone.lm_head.weight is not model.lm_head.weight

    shared = nn.Linear(4, 4, device="meta")
    outer = nn.Module()
    outer.a, outer.b = shared, nn.Sequential(shared)
    copied = fresh_copy(outer)
    assert copied.a is copied.b[0] and copied.a is not shared


def test_mutating_the_copy_leaves_the_original_untouched():
    model = meta_model(LLAMA)
    before = _fingerprint(model)
    clone = fresh_copy(model)
    clone.model.layers[0].self_attn.q_proj = nn.Identity()  # replace a child
    for p in clone.parameters():  # what PEFT does to the base model
        p.requires_grad_(False)
    clone.model.layers[1].mlp.new_attribute = 1  # add attributes
    clone.peft_config = {"default": None}
    clone.config.pretraining_tp = 7  # PeftModel sets it to 1
    clone.model.embed_tokens.register_forward_hook(lambda *a: None)
    clone.model.layers[2].register_buffer("extra", torch.empty(1, device="meta"))
    assert _fingerprint(model) == before
    assert not hasattr(model.model.layers[1].mlp, "new_attribute") and "peft_config" not in vars(model)
    assert not model.model.embed_tokens._forward_hooks


def test_peft_injection_into_the_copy_leaves_the_original_untouched():
    from peft import LoraConfig, get_peft_model

    model = meta_model(GEMMA4_E2B)
    before = _fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(fresh_copy(model), LoraConfig(target_modules="all-linear"), low_cpu_mem_usage=True)
    assert peft_model.base_model.targeted_module_names
    assert _fingerprint(model) == before
    assert not any("lora" in name for name, _ in model.named_modules())
    # and PEFT on a second copy finds the model as fresh as the first time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = get_peft_model(fresh_copy(model), LoraConfig(target_modules="all-linear"), low_cpu_mem_usage=True)
    assert again.base_model.targeted_module_names == peft_model.base_model.targeted_module_names
    assert again.get_nb_trainable_parameters() == peft_model.get_nb_trainable_parameters()


def _fingerprint(model: nn.Module):
    """Everything PEFT could change on a model: the module tree and its classes, each
    parameter's identity and trainability, attributes, hooks, the config."""
    return (
        [(name, type(m).__name__, id(m), sorted(vars(m)), len(m._forward_hooks), len(m._forward_pre_hooks))
         for name, m in model.named_modules()],
        [(name, id(p), p.requires_grad, tuple(p.shape)) for name, p in model.named_parameters(remove_duplicate=False)],
        [(name, id(b)) for name, b in model.named_buffers(remove_duplicate=False)],
        model.config.to_dict(),
    )


# -- identical PEFT inputs are evaluated once per lint ----------------------------------

SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_a_plan_with_the_same_peft_input_is_not_run_twice(monkeypatch):
    import importlib

    from archlint.lora import Plan

    evaluate = importlib.import_module("archlint.lora.evaluate")
    runs = []
    real = evaluate.run_peft
    monkeypatch.setattr(evaluate, "run_peft", lambda model, plan: runs.append(plan.source) or real(model, plan))
    model = meta_model(LLAMA)
    outcomes: dict = {}
    seven_plan = Plan.from_mapping({"target_modules": SEVEN}, source="recipe:seven")
    seven = evaluate.predict(model, seven_plan, outcomes=outcomes)
    fix = evaluate.predict(model, Plan.from_mapping({"r": 8, "target_modules": SEVEN}, source="fix"), outcomes=outcomes)
    linear = evaluate.predict(model, Plan.from_mapping({"target_modules": "all-linear"}, source="recipe:all-linear"),
                              outcomes=outcomes)
    # the fix is the recipe (same LoraConfig arguments): one run; all-linear is another input
    # to PEFT but wraps exactly the same modules on Llama: PEFT's answer is the same, not run again
    assert runs == ["recipe:seven"]
    assert fix is seven and linear == seven
    assert evaluate.run_peft is not real and real(model, Plan.from_mapping({"target_modules": "all-linear"})) == linear


def _tiny_moe(tmp_path):
    import json

    from support import CONFIGS

    data = json.loads((CONFIGS / "Qwen__Qwen3-30B-A3B" / "config.json").read_text())
    data.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=4,
                num_experts_per_tok=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128)
    (tmp_path / "config.json").write_text(json.dumps(data))
    return meta_model(str(tmp_path))


def test_shared_runs_give_exactly_what_peft_gives_each_plan(monkeypatch, tmp_path):
    """Plans that wrap the same modules share one PEFT run; each shared answer equals the
    answer of PEFT run on that plan alone (re-routing of MoE expert names included), and
    plans that wrap something else run."""
    import importlib

    from archlint.lora import Plan

    evaluate = importlib.import_module("archlint.lora.evaluate")
    real = evaluate.run_peft
    runs = []
    monkeypatch.setattr(evaluate, "run_peft", lambda model, plan: runs.append(plan.source) or real(model, plan))
    model = _tiny_moe(tmp_path)
    plans = [
        Plan.from_mapping({"target_modules": ["gate_proj", "up_proj", "down_proj"]}, source="a"),
        Plan.from_mapping({"target_modules": ["up_proj", "gate_proj", "down_proj"]}, source="b"),  # same, reordered
        Plan.from_mapping({"target_modules": ["gate_proj", "down_proj"]}, source="c"),  # no up_proj: no gate_up_proj
        Plan.from_mapping({"target_modules": ["q_proj", "v_proj"]}, source="d"),
        Plan.from_mapping({"target_modules": ["q_proj", "v_proj"], "r": 16}, source="e"),  # another rank
    ]
    outcomes: dict = {}
    shared = [evaluate.predict(model, p, outcomes=outcomes) for p in plans]
    alone = [real(model, p) for p in plans]
    assert shared == alone
    assert shared[0].parameters and shared[0].rerouted  # the experts, through PEFT's MoE conversion
    assert runs == ["a", "c", "d", "e"]  # b is a's wrapping; c, d and e each wrap something else


def test_a_lint_runs_peft_once_per_distinct_input(monkeypatch):
    import importlib

    from archlint import lint

    evaluate = importlib.import_module("archlint.lora.evaluate")
    inputs = []
    real = evaluate.run_peft
    def recording(model, plan, **kwargs):
        inputs.append(evaluate.peft_input(plan))
        return real(model, plan, **kwargs)

    monkeypatch.setattr(evaluate, "run_peft", recording)
    result = lint(GEMMA4_E2B, select=["LORA"]).results[0]
    assert result.error is None and not result.rule_errors
    assert len(inputs) == len(set(inputs)) >= 4
