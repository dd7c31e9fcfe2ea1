"""LoRA rules on the cases the census review found wrong: each reproduced on a zoo model,
with PEFT as the judge where the finding claims what PEFT does."""

from __future__ import annotations

import json
import warnings

import pytest
from support import lint_cached, meta_model

from archlint.findings import Severity

UNREACHED = "fixtures/zoo/towers.py:UnreachedWrapper"


def _findings(target, code, plan=None):
    result = lint_cached(target, (code,), json.dumps(plan, sort_keys=True) if plan else None).results[0]
    assert result.error is None and not result.rule_errors, (result.error, result.rule_errors)
    return [f for f in result.findings if f.code == code]


def test_a_wrapper_no_recipe_reaches_is_info_and_says_so():
    (finding,) = _findings(UNREACHED, "LORA001")
    assert finding.paths == ("quantize",)
    assert finding.severity is Severity.INFO
    assert "no common recipe reaches it" in finding.message and "`quantize`" in finding.message
    assert finding.details["breaks_recipes"] == []


def test_a_plan_that_names_the_wrapper_makes_it_an_error_and_peft_agrees():
    (finding,) = _findings(UNREACHED, "LORA001", {"target_modules": ["quantize"]})
    assert finding.severity is Severity.ERROR and "your LoRA plan" in finding.message
    result = lint_cached(UNREACHED, ("LORA001",), json.dumps({"target_modules": ["quantize"]})).results[0]
    (plan,) = result.plans
    assert plan.verdict == "error" and plan.error["stage"] == "inject" and plan.error["module"] == "quantize"
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings(), pytest.raises(ValueError, match="not supported"):
        warnings.simplefilter("ignore")
        get_peft_model(meta_model(UNREACHED), LoraConfig(target_modules=["quantize"]))


def test_a_wrapper_a_recipe_reaches_stays_an_error():
    findings = _findings("fixtures/zoo/towers.py:WrappedVisionTower", "LORA001")
    assert findings and all(f.severity is Severity.ERROR and "breaks the" in f.message for f in findings)


def test_a_colliding_name_no_recipe_lists_is_info():
    target = "fixtures/zoo/towers.py:QuantizerInEachTower"
    (finding,) = [f for f in _findings(target, "LORA004") if f.details["name"] == "quantize"]
    assert finding.severity is Severity.INFO and "if a target names it" in finding.message
    recipes = [f for f in _findings(target, "LORA004") if f.details["name"] != "quantize"]
    assert recipes and all(f.severity is Severity.INFO for f in recipes)  # plain Linears in both towers


def test_a_custom_embedding_no_recipe_adapts_is_info():
    target = "fixtures/zoo/subclasses.py:OffsetPositionsModel"
    (finding,) = _findings(target, "LORA003")
    assert finding.paths == ("embed_positions",) and finding.severity is Severity.INFO
    assert "no common recipe adapts it" in finding.message
    (planned,) = _findings(target, "LORA003", {"target_modules": ["embed_positions", "up_proj"]})
    assert planned.severity is Severity.WARNING and "a LoRA delta bypasses it" in planned.message
