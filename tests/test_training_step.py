"""One LoRA training step (inject, forward with a loss, backward) under FakeTensorMode."""

from __future__ import annotations

import os
from functools import cache

import pytest
from support import REPO, config

from archlint.lora.training_step import STAGES, StepChecker

ZOO = "fixtures/zoo/training_step.py"


@cache
def _checker(target: str) -> StepChecker:
    from archlint.build import build
    from archlint.facts import Facts
    from archlint.graph import ModuleGraph
    from archlint.resolve import resolve

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        spec = resolve(target)
        built = build(spec)
    finally:
        os.chdir(cwd)
    return Facts(ModuleGraph(built.module), built, spec.config).training_steps


def _zoo(name: str) -> StepChecker:
    return _checker(f"{ZOO}:{name}")


# -- the zoo: one model per way a step can fail ---------------------------------------------


def test_adapters_on_the_text_path_train():
    step = _zoo("Trains").check({"target_modules": ["proj", "head"], "r": 4})
    assert step.ok and step.checked == STAGES
    assert step.lora_parameters == 4  # lora_A and lora_B of both


def test_a_wrapped_linear_returning_a_tuple_fails_in_forward_naming_it():
    step = _zoo("TupleRouter").check({"target_modules": ["proj"], "r": 4})
    assert (step.stage, step.module, step.checked) == ("forward", "proj", ("inject",))
    assert step.error == "AttributeError: 'tuple' object has no attribute 'dtype'"
    assert step.error_dict() == {"type": "AttributeError", "message": "'tuple' object has no attribute 'dtype'",
                                 "stage": "forward", "module": "proj"}


def test_an_adapter_whose_output_is_detached_fails_in_backward():
    step = _zoo("DetachedProjection").check({"target_modules": ["proj", "head"], "r": 4})
    assert (step.stage, step.module, step.checked) == ("backward", "proj", ("inject", "forward"))
    assert "no gradient reaches" in step.error
    alone = _zoo("DetachedProjection").check({"target_modules": ["proj"], "r": 4})
    assert (alone.stage, alone.module) == ("backward", "proj")  # the loss has no trainable path at all


def test_adapters_text_never_runs_are_not_required_to_learn():
    step = _zoo("Trains").check({"target_modules": ["vision"], "r": 4})
    assert step.ok and step.checked == ("inject", "forward")
    assert "no adapted module runs on text input" in step.note


def test_every_output_of_a_headless_model_carries_the_loss():
    """Without labels the loss is the sum of every floating output: an adapter on the pooler,
    which only the pooled output depends on, gets its gradient."""
    step = _zoo("PooledEncoder").check({"target_modules": ["proj", "pooler"], "r": 4})
    assert step.ok and step.checked == STAGES, step
    # with a loss too: the next-sentence head trains under the objective whose labels it needs
    step = _zoo("PretrainingHeads").check({"target_modules": ["proj", "pooler"], "r": 4})
    assert step.ok and step.checked == STAGES, step
    step = _zoo("NestedPooledEncoder").check({"target_modules": ["proj", "pooler"], "r": 4})
    assert step.ok and step.checked == STAGES, step


def test_a_refused_target_is_named_at_inject():
    step = _zoo("Trains").check({"target_modules": ["proj", "unsupported"], "r": 4})
    assert (step.stage, step.module) == ("inject", "unsupported")
    assert step.error.startswith("ValueError: Target module Sequential")


def test_what_peft_refuses_fails_in_inject():
    step = _zoo("Trains").check({"target_modules": ["nothing_by_this_name"], "r": 4})
    assert step.stage == "inject" and step.checked == ()
    assert step.error.startswith("NoMatchingPeftModuleError: Target modules {'nothing_by_this_name'} not found")


def test_plans_adapting_the_same_modules_share_one_step():
    checker = _checker(config("meta-llama__Llama-3.1-8B"))
    seven = checker.check({"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"]})
    before = len(checker._steps)
    again = checker.check({"target_modules": "all-linear", "r": 16})
    assert again is seven and len(checker._steps) == before


# -- real models ---------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "router"), [("phimoe", "model.layers.0.mlp.router"),
                                                ("llama4_text", "model.layers.0.feed_forward.router")])
def test_all_linear_breaks_in_forward_at_the_wrapped_router(target, router):
    step = _checker(target).check({"target_modules": "all-linear"})
    assert (step.stage, step.module) == ("forward", router)
    assert step.error == "AttributeError: 'tuple' object has no attribute 'dtype'"
    assert step.model.startswith("shrunk copy")
    q_v = _checker(target).check({"target_modules": ["q_proj", "v_proj"]})
    assert q_v.ok and q_v.checked == STAGES


@pytest.mark.parametrize("name", ["meta-llama__Llama-3.1-8B", "Qwen__Qwen3-30B-A3B"])
def test_all_linear_trains_on_llama_and_qwen3_moe(name):
    step = _checker(config(name)).check({"target_modules": "all-linear"})
    assert step.ok and step.checked == STAGES, step
    assert step.lora_parameters > 0


def test_gemma4_text_step_reaches_the_language_model_adapters():
    regex = (r"model\.language_model\.layers\.\d+\.mlp\.(?:down_proj|gate_proj|up_proj)"
             r"|model\.language_model\.layers\.\d+\.self_attn\.(?:k_proj|o_proj|q_proj|v_proj)")
    step = _checker(config("google__gemma-4-E2B-it")).check({"target_modules": regex})
    assert step.ok and step.checked == STAGES, step


def test_the_shrunk_copy_keeps_the_build_dtype_so_bf16_expert_kernels_run():
    """nemo_speechlm keeps an audio tower in float32 and runs its Nemotron-H experts through
    grouped_mm, which takes bfloat16 only: a copy built in its first parameter's dtype failed
    every plan's forward in the experts, where the model itself runs."""
    checker = _checker("nemo_speechlm")
    step = checker.check({"target_modules": ["q_proj", "v_proj"]})
    assert step.ok and step.checked == STAGES, step
    assert step.model.startswith("shrunk copy")


def test_llama4_moe_layers_survive_the_shrink():
    """`moe_layers` lists every layer by number; the shrunk copy keeps its MoE blocks."""
    checker = _checker("llama4_text")
    names = {type(m).__name__ for m in checker.shrunk.module.modules()}
    assert "Llama4TextMoe" in names
    assert checker.shrunk.label == "shrunk copy (model.layers 48→2)"


def test_a_structure_placed_by_a_layer_number_moves_with_the_shrink():
    """DeepSeek-V3's MoE layers start at `first_k_dense_replace=3`: the copy keeps layers 0
    and 60 and says its MoE layers start at 1, each layer with the structure of the layer it
    stands for (the copy used to keep the prefix 0-3 for it)."""
    checker = _checker(config("deepseek-ai__DeepSeek-V3"))
    copy = checker.shrunk.module
    assert checker.shrunk.label == "shrunk copy (model.layers 61→2)"
    assert copy.config.first_k_dense_replace == 1
    assert [type(layer.mlp).__name__ for layer in copy.model.layers] == ["DeepseekV3MLP", "DeepseekV3MoE"]
    assert checker.shrunk.original_path("model.layers.1.mlp.gate") == "model.layers.60.mlp.gate"
    assert checker.check({"target_modules": "all-linear"}).checked == STAGES


def test_a_rewrite_of_a_number_that_does_not_place_the_structures_is_dropped():
    """Every whole-number key equal to a structure's first layer is tried, one at a time;
    only a rewrite after which each layer of the copy has the structure of the layer it
    stands for is kept: moving `topk_group` instead leaves the copy's two layers dense."""
    from archlint.graph import ModuleGraph
    from archlint.shrink import _attempt, _plans

    model = _checker(config("deepseek-ai__DeepSeek-V3")).full.module
    graph = ModuleGraph(model)
    plans = _plans(graph, model.config, keep="first")
    assert plans == {(): (61, (0, 60))}
    assert _attempt(graph, model, plans, {(): {"topk_group": 1}}) is None
    assert _attempt(graph, model, plans, {(): {"first_k_dense_replace": 1}}) is not None


def test_a_plan_adapting_a_subset_of_a_clean_plan_is_clean_without_its_own_run():
    checker = _zoo("Trains")
    both = checker.check({"target_modules": ["proj", "head"], "r": 4})
    one = checker.check({"target_modules": ["head"], "r": 4, "lora_alpha": 32})
    assert both.ok and one.ok and one.checked == STAGES
    assert "implied by the clean step" in one.note


def test_a_key_given_its_lora_config_default_does_not_make_a_step_of_its_own():
    """LORA006's fix spells out `lora_dropout=0.0`, LoraConfig's default: the same config as
    leaving it out, so a clean step without it stands for it; a dropout that is not the
    default is a different step."""
    checker = StepChecker(_zoo("Trains").full.module, _zoo("Trains").shrunk)
    assert checker.check({"target_modules": ["proj", "head"], "r": 4}).note == ""
    same = checker.check({"target_modules": ["head"], "r": 4, "lora_dropout": 0.0, "bias": "none"})
    assert same.ok and "implied by the clean step" in same.note
    other = checker.check({"target_modules": ["head"], "r": 4, "lora_dropout": 0.1})
    assert other.ok and other.note == ""  # stepped on its own

def test_a_step_unclean_in_backward_implies_only_plans_avoiding_what_it_did_not_reach():
    checker = _zoo("DetachedProjection")
    both = checker.check({"target_modules": ["proj", "head"], "r": 4})
    assert both.stage == "backward" and both.module == "proj"
    head = checker.check({"target_modules": ["head"], "r": 4})
    assert head.ok and head.checked == STAGES and "implied by the gradients" in head.note
    alone = StepChecker(checker.full.module, checker.shrunk, supplied=checker.supplied)
    assert alone.check({"target_modules": ["head"], "r": 4}).checked == STAGES  # what its own step says
    proj = checker.check({"target_modules": ["proj"], "r": 4})
    assert (proj.stage, proj.module, proj.note) == ("backward", "proj", "")  # stepped on its own


def test_a_step_failing_in_forward_implies_nothing():
    checker = _zoo("TupleRouter")
    assert checker.check({"target_modules": "all-linear", "r": 4}).stage == "forward"
    head = checker.check({"target_modules": ["head"], "r": 4})
    assert head.ok and head.note == ""  # ran on its own


def test_a_headless_model_is_stepped_without_labels():
    """`AutoModel` classes take no `labels`: the loss is the sum of their output."""
    step = _checker("fixtures/configs/meta-llama__Llama-3.1-8B").check({"target_modules": ["q_proj"]})
    assert step.ok
    headless = _checker("siglip2_text_model").check({"target_modules": ["q_proj", "v_proj"]})
    assert headless.ok and headless.checked == STAGES, headless


# -- the adapted copy of the plan's own PEFT run -----------------------------------------------


@pytest.mark.parametrize("name, ok", [("Trains", True), ("TupleRouter", False)])
def test_a_step_takes_the_adapted_copy_of_the_plan_s_peft_run_instead_of_injecting_again(monkeypatch, name, ok):
    from torch import nn

    from archlint import Plan
    from archlint.lora import training_step
    from archlint.lora.oracle import run_peft

    checker = _checker.__wrapped__(f"{ZOO}:{name}")  # a checker of its own: the test counts injections
    model = (checker.shrunk or checker.full).module
    kwargs = {"target_modules": ["proj"] if name == "TupleRouter" else ["proj", "head"], "r": 4}
    injected = []
    inject = training_step._inject
    monkeypatch.setattr(training_step, "_inject", lambda *a: injected.append(a) or inject(*a))

    kept: list = []
    assert run_peft(model, Plan.from_mapping(kwargs), keep=kept).ok and len(kept) == 1
    step = checker.check(kwargs, adapted=(model, kept[0]))
    assert injected == []  # the given copy was stepped ...
    assert step.ok is ok  # ... for real: the tuple-returning wrapped module still fails in forward
    if not ok:
        assert (step.stage, step.module) == ("forward", "proj")

    other: list = []
    run_peft(model, Plan.from_mapping({**kwargs, "r": 8}), keep=other)
    checker.check({**kwargs, "r": 8}, adapted=(nn.Linear(2, 2), other[0]))  # made from another module
    assert len(injected) == 1  # not taken: injected afresh


# -- several fixes at once: their union is stepped first ------------------------------------


def _branch_fix(*names: str) -> dict:
    return {"target_modules": ["proj"], "target_parameters": [f"branches.{n}" for n in names], "r": 4}


def _verdicts(outcomes) -> list:
    return [(o.ok, o.parameters, o.checked, o.step_error) for o in outcomes]


def _alone(fixes: list[dict]) -> list:
    from support import fresh_facts

    return _verdicts(fresh_facts(f"{ZOO}:ParameterBranches").plans.outcome_of(fix) for fix in fixes)


def test_a_clean_union_of_fixes_implies_each_fix_step():
    from support import fresh_facts

    facts = fresh_facts(f"{ZOO}:ParameterBranches")
    fixes = [_branch_fix("first"), _branch_fix("second")]
    outcomes = facts.plans.outcomes_of(fixes)
    assert _verdicts(outcomes) == _alone(fixes)
    assert all(o.checked == STAGES and o.step_error is None for o in outcomes)
    steps = list(facts.training_steps._steps.values())
    implied = [s for s in steps if s.note.startswith("implied")]
    assert len(implied) == 2  # the two fixes: one real step of their union stood for both
    assert facts.plans.outcome_of(_branch_fix("first", "second")).checked == STAGES


def test_a_union_that_fails_leaves_each_fix_its_own_step():
    from support import fresh_facts

    facts = fresh_facts(f"{ZOO}:ParameterBranches")
    fixes = [_branch_fix("first"), _branch_fix("second"), _branch_fix("detached")]
    plans = facts.plans  # the recipes' steps first
    before = len(facts.training_steps._steps)
    outcomes = plans.outcomes_of(fixes)
    assert _verdicts(outcomes) == _alone(fixes)
    assert [o.step_error is None for o in outcomes] == [True, True, False]
    assert "no gradient reaches" in outcomes[2].step_error
    union = facts.plans.outcome_of(_branch_fix("detached", "first", "second"))
    assert union.step_error is not None  # the union's own step failed ...
    new = list(facts.training_steps._steps.values())[before:]
    assert len(new) == 4 and not any(s.note for s in new)  # ... so each fix ran its own step


def test_fixes_that_differ_in_more_than_target_parameters_are_stepped_one_by_one():
    from support import fresh_facts

    facts = fresh_facts(f"{ZOO}:ParameterBranches")
    fixes = [_branch_fix("first"), {**_branch_fix("second"), "r": 8}]
    facts.plans.outcomes_of(fixes)
    assert not any(s.note for s in facts.training_steps._steps.values())
    assert len([k for k in facts.plans.outcomes if k[0] == "fix"]) == 2  # no union was asked


@pytest.mark.slow
def test_a_plan_only_in_a_tower_text_never_runs_is_not_stepped_on_the_whole_model(monkeypatch):
    """LLaVA's vision tower never runs on text: an entry naming one of its layers that the
    shrunk copy does not keep would send the step to the whole model, whose forward would
    only show that no adapter ran. The model's own training forward already shows it."""
    checker = _checker("fixtures/configs/llava-hf__llava-1.5-7b-hf")
    tower = "model.vision_tower.encoder.layers"
    assert tower in checker.idle_stacks and not any("language_model" in s for s in checker.idle_stacks)
    plan = {"target_modules": [f"{tower}.13.self_attn.q_proj"], "r": 4}

    truth = StepChecker(checker.full.module, checker.shrunk, supplied=checker.supplied).check(plan)
    assert truth.model == "the model itself" and truth.checked == ("inject", "forward")  # the whole model ran

    monkeypatch.setattr(StepChecker, "_step", lambda *a: pytest.fail("stepped the whole model"))
    inferred = checker.check(plan)
    assert (inferred.checked, inferred.stage, inferred.note) == (truth.checked, truth.stage, truth.note)
    assert not checker._all_idle((("model.language_model.layers.13.self_attn.q_proj",), ()))  # text runs
