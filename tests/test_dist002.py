"""DIST002 on bare model types: a per-expert MoE is found by its router's role (a Linear
whose output feeds a top-k), not by a Linear that happens to be as wide as a layer list."""

from __future__ import annotations

from support import lint_cached

from archlint.findings import Severity


def _dist002(model_type):
    (result,) = lint_cached(model_type, select=("DIST002",)).results
    assert result.error is None, result.error
    return result.findings


def test_nllb_moe_per_expert_blocks_are_found_beside_a_dropout():
    """NllbMoeExperts is a ModuleDict of 128 experts plus a token Dropout; the router's
    classifier feeds a top-k in the router's own trace."""
    (finding,) = _dist002("nllb-moe")
    assert finding.severity == Severity.WARNING
    assert finding.module_class == "NllbMoeSparseMLP"
    assert "model.encoder.layers.3.ffn" in finding.paths


def test_layoutlmv3_position_bias_as_wide_as_the_layer_list_is_no_router():
    """LayoutLMv3's encoder: 12 layers and a relative-position bias Linear with 12 heads."""
    assert _dist002("layoutlmv3") == []
