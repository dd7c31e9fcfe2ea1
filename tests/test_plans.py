"""LoRA plans (issue #5): parsing, the verdicts and fixes on real configs, PEFT as the judge."""

from __future__ import annotations

import json
import re
import warnings

import pytest
from support import config, lint_cached, meta_model, run_cli

from archlint import Plan
from archlint.errors import UsageError
from archlint.findings import Severity

GEMMA4_E2B = config("google__gemma-4-E2B-it")
GEMMA4_26B = config("google__gemma-4-26B-A4B")
QWEN3_MOE = config("Qwen__Qwen3-30B-A3B")
DEEPSEEK_V3 = config("deepseek-ai__DeepSeek-V3")
MIXTRAL = config("mistralai__Mixtral-8x7B-v0.1")
LLAMA = config("meta-llama__Llama-3.1-8B")
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
SEVEN = [*QKVO, "gate_proj", "up_proj", "down_proj"]


def _lint(target, plan=None, select=("LORA",)):
    result = lint_cached(target, select, json.dumps(plan, sort_keys=True) if plan else None).results[0]
    assert result.error is None and not result.rule_errors, (result.error, result.rule_errors)
    return result


def _peft(target, low_cpu_mem_usage=False, **config):
    """PEFT itself on a fresh meta model: (wrapped modules, wrapped parameters, trainable).
    ``low_cpu_mem_usage`` keeps the new adapter weights on meta (for expert tensors, whose
    LoRA factors would otherwise be allocated and initialised on the CPU: gigabytes)."""
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(meta_model(target), LoraConfig(**config), low_cpu_mem_usage=low_cpu_mem_usage)
    return (set(model.base_model.targeted_module_names), set(model.base_model.targeted_parameter_names),
            model.get_nb_trainable_parameters()[0])


def _verified_lines(fix):
    """(pasteable line, its verification comment) pairs of a verified fix."""
    lines = fix.detail.splitlines()
    return [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]


# -- parsing ------------------------------------------------------------------------


def test_flags_read_names_regexes_and_the_all_linear_shorthand():
    assert Plan.from_flags(target_modules="q_proj, v_proj").target_modules == ("q_proj", "v_proj")
    assert Plan.from_flags(target_modules=r"re:.*\.(q|v)_proj").target_modules == r".*\.(q|v)_proj"
    assert Plan.from_flags(target_modules="all-linear").target_modules == "all-linear"
    plan = Plan.from_flags(target_modules="all-linear",
                           target_parameters="mlp.experts.gate_up_proj,mlp.experts.down_proj")
    assert plan.target_parameters == ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


@pytest.mark.parametrize(("mapping", "message"), [
    ({"target_modules": "(q_proj"}, "not a valid regular expression"),
    ({"target_modules": ["q_proj"], "target_modulez": ["v_proj"]}, "unknown key(s) target_modulez"),
    ({"target_modules": ["q_proj"], "r": 0}, "r must be a positive integer"),
    ({"target_modules": ["q_proj"], "peft_type": "IA3"}, "LoRA plans only"),
    ({"target_modules": [1, 2]}, "list of non-empty names"),
    ({"target_modules": ["q_proj"], "layers_pattern": "layers"}, "needs layers_to_transform"),
])
def test_invalid_plans_are_usage_errors(mapping, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        Plan.from_mapping(mapping, source="peft-config")


def test_an_adapter_config_as_peft_saves_it_round_trips(tmp_path):
    from peft import LoraConfig

    saved = LoraConfig(r=16, target_modules=["q_proj", "v_proj"], exclude_modules=["vision_tower"],
                       layers_to_transform=[0, 1], layers_pattern="layers").to_dict()
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({k: (sorted(v) if isinstance(v, set) else v) for k, v in saved.items()}, default=str))
    plan = Plan.from_file(str(path))
    assert (plan.r, set(plan.target_modules), plan.layers_to_transform) == (16, {"q_proj", "v_proj"}, (0, 1))
    assert plan.source == "peft-config"


def test_cli_bad_plan_exits_2_with_the_reason(tmp_path):
    bad = run_cli(GEMMA4_E2B, "--target-modules", "re:(q_proj")
    assert bad.returncode == 2 and "not a valid regular expression" in bad.stderr
    (tmp_path / "a.json").write_text('{"target_modules": ["q_proj"], "lora_alfa": 16}')
    bad = run_cli(GEMMA4_E2B, "--peft-config", str(tmp_path / "a.json"))
    assert bad.returncode == 2 and "unknown key(s) lora_alfa" in bad.stderr


# -- Gemma-4 E2B: the wrapper crash and its verified fix ------------------------------


def test_gemma4_qkvo_plan_is_predicted_to_raise_peft_s_error():
    result = _lint(GEMMA4_E2B, {"target_modules": QKVO})
    (plan,) = result.plans
    assert plan.verdict == "error"
    assert plan.error_type == "ValueError"
    assert re.match(r"Target module Gemma4ClippableLinear\(.*\) is not supported", plan.error_message, re.S)
    by_entry = {e.entry: e for e in plan.entries}
    assert set(by_entry["q_proj"].classes) == {"Gemma4ClippableLinear", "Linear"}
    assert set(by_entry["q_proj"].towers) == {"model.language_model", "model.vision_tower", "model.audio_tower"}
    # KV-shared layers: k_proj only in the first 15 of 35 language-model layers (LORA008)
    (k008,) = [f for f in result.findings if f.code == "LORA008" and f.details["entry"] == "k_proj"]
    assert k008.details["container"] == "model.language_model.layers"
    assert (k008.details["reached"], k008.details["total"]) == (15, 35)


def test_gemma4_verified_fix_adapts_exactly_the_language_model_projections():
    result = _lint(GEMMA4_E2B, {"target_modules": QKVO})
    fix = next(f.fix for f in result.findings if f.code == "LORA001")
    (scoped_line, comment), _ = _verified_lines(fix)
    assert "verified with PEFT" in comment
    regex = re.search(r'target_modules=r"([^"]+)"', scoped_line).group(1)
    modules, _, trainable = _peft(GEMMA4_E2B, r=8, target_modules=regex)
    model = meta_model(GEMMA4_E2B)
    names = set(QKVO)  # the plan's own names: the fix does not widen the plan to the MLPs
    expected = {n for n, m in model.named_modules() if type(m).__name__ == "Linear"
                and n.startswith("model.language_model.") and n.rsplit(".", 1)[-1] in names}
    assert modules == expected
    assert f"adapts {len(expected)} modules" in comment and f"{trainable:,} trainable parameters" in comment
    lora004 = next(f.fix for f in result.findings if f.code == "LORA004")
    assert f'target_modules=r"{regex}"' in lora004.detail  # both findings suggest the same scoped plan
    # the same regex as a plan: archlint's trainable count is PEFT's
    (plan,) = _lint(GEMMA4_E2B, {"target_modules": regex}).plans
    assert plan.verdict == "ok" and plan.trainable == trainable and set(plan.modules) == expected
    # the fix trains: its printed verification ran one step, and so did the plan's
    assert "one fake training step ran clean (inject, forward, backward)" in comment
    assert tuple(plan.checked) == ("inject", "forward", "backward")


# -- MoE experts: what PEFT 0.21.2 really does ----------------------------------------


def test_qwen3_moe_seven_names_adapt_the_experts_through_peft_s_conversion():
    result = _lint(QWEN3_MOE, {"target_modules": SEVEN})
    (plan,) = result.plans
    assert plan.verdict == "ok"
    model = meta_model(QWEN3_MOE)
    experts = {f"{n}.{p}" for n, m in model.named_modules() if n.endswith("mlp.experts")
               for p in ("gate_up_proj", "down_proj")}
    assert set(plan.parameters) == experts
    (lora006,) = [f for f in result.findings if f.code == "LORA006"]
    assert lora006.severity == Severity.INFO and "adapts every expert tensor" in lora006.message
    assert _peft(QWEN3_MOE, True, r=8, target_modules=SEVEN)[2] == plan.trainable


def test_gemma4_26b_experts_are_not_adapted_and_the_target_parameters_fix_reaches_all():
    # The seven names also reach the vision tower's Gemma4ClippableLinear: PEFT raises (not "ok").
    (raw,) = _lint(GEMMA4_26B, {"target_modules": SEVEN}).plans
    assert raw.verdict == "error" and "Gemma4ClippableLinear" in raw.error_message
    scoped = (r"model\.language_model\.layers\.\d+\."
              r"(?:self_attn\.(?:q_proj|k_proj|v_proj|o_proj)|mlp\.(?:gate_proj|up_proj|down_proj))")
    result = _lint(GEMMA4_26B, {"target_modules": scoped})
    (plan,) = result.plans
    assert plan.verdict == "ok" and plan.parameters == ()
    (lora006,) = [f for f in result.findings if f.code == "LORA006"]
    assert lora006.severity == Severity.ERROR and "never reaches them" in lora006.message
    ((line, comment),) = _verified_lines(lora006.fix)
    entries = json.loads(re.search(r"target_parameters=(\[[^]]*\])", line).group(1))
    _, params, trainable = _peft(GEMMA4_26B, True, r=8, target_modules=[], target_parameters=entries, lora_dropout=0.0)
    model = meta_model(GEMMA4_26B)
    assert params == {f"{n}.{p}" for n, m in model.named_modules() if n.endswith(".experts")
                      for p, t in m.named_parameters(recurse=False) if t.ndim == 3}
    assert len(params) == 60 and f"{trainable:,} trainable parameters" in comment


@pytest.mark.slow
def test_deepseek_v3_names_the_plain_linears_peft_re_routes_away_from():
    result = _lint(DEEPSEEK_V3)
    skipped = {f.details["entry"]: set(f.paths) for f in result.findings
               if f.code == "LORA008" and "rerouted_to" in f.details}
    assert skipped["gate_proj"] == {f"model.layers.{i}.mlp.gate_proj" for i in range(3)} | {
        f"model.layers.{i}.mlp.shared_experts.gate_proj" for i in range(3, 61)}
    # PEFT agrees: the seven names leave exactly those unwrapped
    modules, _, _ = _peft(DEEPSEEK_V3, True, r=8, target_modules=SEVEN)
    assert not skipped["gate_proj"] & modules
    fix = next(f.fix for f in result.findings if f.code == "LORA008" and f.details.get("entry") == "gate_proj")
    ((line, _),) = _verified_lines(fix)
    entries = json.loads(re.search(r"target_parameters=(\[[^]]*\])", line).group(1))
    _, params, _ = _peft(DEEPSEEK_V3, True, r=8, target_modules=SEVEN, target_parameters=entries)
    assert {f"{p}.weight" for p in skipped["gate_proj"]} <= params


def test_a_router_linear_peft_adapts_through_its_weight_is_not_called_unadapted():
    # afmoe's router holds an nn.Linear `gate`; PEFT's MoE conversion moves `gate` from
    # target_modules to the target parameter `gate.weight`, which wraps that very Linear
    result = _lint("afmoe")
    entries = {f.details["entry"] for f in result.findings if f.code == "LORA008" and "rerouted_to" in f.details}
    assert "gate" not in entries
    assert {"gate_proj", "up_proj", "down_proj"} <= entries  # the dense and shared-expert Linears it does skip
    all_linear = next(p for p in result.plans if p.source == "recipe:all-linear")
    assert all_linear.verdict == "ok"
    _, params, _ = _peft("afmoe", True, r=8, target_modules="all-linear")
    assert "model.layers.1.mlp.router.gate.weight" in params


def test_mixtral_peft_default_recipe_is_predicted_to_raise_with_the_reason():
    result = _lint(MIXTRAL)
    default = next(p for p in result.plans if p.source == "recipe:peft-default")
    assert default.verdict == "error" and default.error_type == "NoMatchingPeftModuleError"
    assert any("turns target_modules=None into an empty set" in n for n in default.notes)
    (router,) = [f for f in result.findings if f.code == "LORA007"]
    assert router.pattern == "model.layers.*.mlp.gate" and "all-linear" in router.message


# -- dead entries and containers ----------------------------------------------------


def test_an_entry_matching_nothing_names_the_closest_real_names():
    result = _lint(LLAMA, {"target_modules": ["q_proj", "v_porj"]})
    (dead,) = [f for f in result.findings if f.code == "LORA011"]
    assert dead.pattern == "v_porj" and dead.details["closest"][0] == "v_proj"
    assert 'target_modules=["q_proj", "v_proj"]' in dead.fix.detail and "verified with PEFT" in dead.fix.detail
    assert result.plans[0].verdict == "ok"  # PEFT itself stays silent


def test_an_entry_hitting_a_decoder_layer_is_lora010_and_peft_raises():
    result = _lint(LLAMA, {"target_modules": ["q_proj", "layers.0"]})
    (plan,) = result.plans
    assert plan.verdict == "error" and "LlamaDecoderLayer" in plan.error_message
    (container,) = [f for f in result.findings if f.code == "LORA010"]
    assert container.paths == ("model.layers.0",) and container.details["role"] == "container"
    assert "verified with PEFT" in container.fix.detail


# -- the report --------------------------------------------------------------------


def test_json_plans_have_exactly_the_issue_s_shape():
    out = run_cli(GEMMA4_E2B, "--target-modules", ",".join(QKVO), "--format", "json", "--select", "LORA")
    assert out.returncode == 1, out.stderr
    (plan,) = json.loads(out.stdout)["results"][0]["plans"]
    assert list(plan) == ["source", "verdict", "error", "checked", "entries", "modules", "parameters",
                          "trainable_parameters", "peft_version"]
    assert plan["source"] == "flags" and plan["verdict"] == "error"
    assert list(plan["error"]) == ["type", "message", "stage", "module"]
    assert plan["error"]["stage"] == "inject" and plan["checked"] == []  # PEFT raised in get_peft_model
    assert plan["entries"][0] == {"entry": "q_proj", "matches": 63, "classes": ["Gemma4ClippableLinear", "Linear"],
                                  "layers_reached": 63, "layers_total": 63}


def test_without_a_plan_the_recipes_say_what_works():
    out = run_cli(GEMMA4_E2B, "--select", "LORA")
    table = out.stdout[out.stdout.index("LoRA recipes"):]
    assert re.search(r"PEFT default\s+works", table)
    assert re.search(r"q,k,v,o\s+breaks\s+ValueError:\s+Target\s+module\s+Gemma4ClippableLinear", table)
    assert re.search(r"all-linear\s+works\s+525 modules", table)
    report = json.loads(run_cli(GEMMA4_E2B, "--select", "LORA", "--format", "json").stdout)
    recipes = [p["source"] for p in report["results"][0]["plans"]]
    assert recipes == ["recipe:peft-default", "recipe:qkvo", "recipe:seven", "recipe:all-linear"]


def test_with_a_plan_only_findings_about_what_it_touches_remain():
    scoped = r"model\.language_model\.layers\.\d+\.self_attn\.(?:q_proj|o_proj)"
    codes = {f.code for f in _lint(GEMMA4_E2B, {"target_modules": scoped}).findings}
    assert not codes & {"LORA001", "LORA004"}  # the towers' wrappers are out of this plan's reach


def test_without_peft_the_reimplementation_answers(monkeypatch):
    import importlib

    evaluate_module = importlib.import_module("archlint.lora.evaluate")

    monkeypatch.setattr(evaluate_module, "peft_available", lambda: False)
    model = meta_model(GEMMA4_E2B)
    with_peft = evaluate_module.predict(model, Plan.from_mapping({"target_modules": "all-linear"}), engine="peft")
    without = evaluate_module.predict(model, Plan.from_mapping({"target_modules": "all-linear"}))
    assert without.engine == "reimplementation"
    assert (set(without.modules), without.trainable) == (set(with_peft.modules), with_peft.trainable)


# -- PEFT on the shrunk copy ----------------------------------------------------------------


@pytest.mark.parametrize("regex, on_copy", [
    (r"model\.layers\.\d+\.mlp\.(?:gate|up)_proj", True),  # any index: every layer alike
    (r"model\.layers\.(?:0|1)\.mlp\.up_proj", False),  # names layers: the copy cannot stand for them
    (r"model\.layers\.\d*[02468]\.self_attn\.q_proj", False),  # even layers only
])
def test_a_regex_goes_to_the_shrunk_copy_only_when_it_decides_alike_for_every_layer(regex, on_copy):
    from support import fresh_facts

    from archlint.lora.evaluate import SHRUNK_COPY, on_shrunk_copy
    from archlint.lora.oracle import run_peft

    facts = fresh_facts(config("meta-llama__Llama-3.1-8B"))
    model = facts.built.module
    plan = Plan.from_mapping({"target_modules": regex, "r": 8})
    outcome = on_shrunk_copy(model, plan, {SHRUNK_COPY: lambda: facts.shrunk_model})
    if not on_copy:
        assert outcome is None
        return
    whole = run_peft(model, plan)
    assert outcome is not None and whole.ok
    assert (outcome.modules, outcome.parameters, outcome.trainable) == (whole.modules, whole.parameters,
                                                                         whole.trainable)
    assert len(outcome.modules) == 64


def _broken_recipe(message: str):
    from archlint.report import Engine, PlanSummary, Verdict

    return PlanSummary("recipe:qkvo", "q,k,v,o", Verdict.ERROR, Engine.PEFT, "PEFT on the meta model", None, 8,
                       error={"type": "ValueError", "message": message, "stage": "inject", "module": None})


def test_broken_recipe_shows_what_peft_says_the_user_can_do():
    """PEFT's whole message when it fits (what it supports, not only what failed); a long
    message keeps its sentences, its long lists cut to their first items."""
    from archlint.render.plans import ERROR_CHARS, short_error

    unsupported = ("Target module Wrapped(\n  (linear): Linear(in_features=8, out_features=8, bias=False)\n) is "
                   "not supported. Currently, only the following modules are supported: `torch.nn.Linear`, "
                   "`torch.nn.Embedding`, `torch.nn.Conv1d`.")
    assert short_error(_broken_recipe(unsupported)) == (
        "ValueError: Target module Wrapped(…) is not supported. Currently, only the following modules are "
        "supported: `torch.nn.Linear`, `torch.nn.Embedding`, `torch.nn.Conv1d`.")
    names = ", ".join(f"'model.layers.{i}.attn'" for i in range(40))
    not_found = (f"Target modules {{{names}}} not found in the base model. Please check the target modules and "
                 "try again.")
    shown = short_error(_broken_recipe(not_found))
    assert len(shown) <= ERROR_CHARS
    assert shown == ("ValueError: Target modules {'model.layers.0.attn', 'model.layers.1.attn', "
                     "'model.layers.2.attn', … 37 more} not found in the base model. Please check the target "
                     "modules and try again.")


def test_parsing_a_plan_keeps_library_logs_off_stderr():
    """A plan parsed through the Python API imports PEFT (its LoraConfig fields), which imports
    bitsandbytes, which logs missing optional CPU kernels on some machines: none of it may
    reach stderr. A fresh interpreter, since the import happens once per process."""
    import subprocess
    import sys

    code = "from archlint import Plan; Plan.from_mapping({'target_modules': ['q_proj'], 'r': 8})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
