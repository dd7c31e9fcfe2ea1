"""Every rule's own VALID/INVALID examples, and the catalogue's hygiene."""

from __future__ import annotations

import json

import pytest
from support import lint_cached

from archlint.rules import all_rules
from archlint.rules.base import CODE_PATTERN, DOC_HEADINGS, NAME_PATTERN

CASES = [
    pytest.param(rule, example, valid,
                 id=f"{rule.code}-{'valid' if valid else 'invalid'}-{example.target.rsplit('/', 1)[-1]}")
    for rule in all_rules()
    for valid, examples in ((True, rule.VALID), (False, rule.INVALID))
    for example in examples
]


@pytest.mark.parametrize(("rule", "example", "valid"), CASES)
def test_example(rule, example, valid):
    plan = json.dumps(example.plan, sort_keys=True) if example.plan else None
    result = lint_cached(example.target, (rule.code,), plan, example.quantization).results[0]
    assert result.error is None, result.error
    assert not result.rule_errors, result.rule_errors
    found = [f for f in result.findings if f.code == rule.code]
    if valid:
        assert found == [], [f.paths for f in found]
        return
    assert {p for f in found for p in f.paths} == set(example.paths)
    if example.fix:
        assert any(f.fix and example.fix in f.fix.detail + f.fix.title for f in found), [f.fix for f in found]


def test_codes_and_names_are_unique_and_well_formed():
    rules = all_rules()
    assert len({r.code for r in rules}) == len(rules)
    assert len({r.name for r in rules}) == len(rules)
    for rule in rules:
        assert CODE_PATTERN.match(rule.code), rule.code
        assert NAME_PATTERN.match(rule.name), rule.name


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_rule_documents_itself_and_has_examples(rule):
    assert rule.summary()
    assert list(rule.sections()) == list(DOC_HEADINGS)
    assert rule.VALID and rule.INVALID


def test_contract_codes_exist():
    """The codes issue #2 asks for (RULES.md is the contract)."""
    expected = {
        "LORA001": "linear-wrapper", "LORA002": "bare-weight-projection", "LORA003": "linear-subclass-forward",
        "LORA004": "target-name-collision", "LORA005": "fused-projection", "LORA006": "stacked-expert-parameters",
        "LORA009": "untargetable-parameters", "NORM001": "custom-rmsnorm", "NORM002": "weightless-norm",
        "NORM003": "layernorm-among-rmsnorms", "ATTN001": "head-dim-over-256", "ATTN002": "attention-sinks",
        "ATTN003": "logit-softcapping", "TRAIN001": "required-training-input",
        "TRAIN002": "gradient-checkpointing-unsupported", "TRAIN003": "cache-coupled-layers",
        "DIST001": "no-split-modules-gap",
        # issue #5: the plan rules
        "LORA007": "router-in-targets", "LORA008": "partial-layer-coverage",
        "LORA010": "target-matches-container", "LORA011": "target-matches-nothing",
        # quantization, checkpoints, distributed
        "QUANT001": "unquantized-weights", "QUANT002": "skip-list-drops-defaults",
        "QUANT003": "untrainable-quantization",
        "CKPT001": "checkpoint-key-mismatch", "CKPT002": "checkpoint-shape-mismatch",
        "CKPT003": "checkpoint-dtype-mismatch",
        "DIST002": "moe-zero3-leaf", "DIST003": "fp32-module-in-fsdp-unit",
    }
    assert {r.code: r.name for r in all_rules() if r.code in expected} == expected
