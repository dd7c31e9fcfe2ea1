"""Roles read from data flow, one zoo model per role: paths and roles asserted."""

from __future__ import annotations

import sys

import pytest
import torch
from support import REPO

from archlint.graph import ModuleGraph
from archlint.probe.alike import ProbeMemo
from archlint.probe.role_map import RoleMap
from archlint.probe.roles import Role
from archlint.probe.run import _run

sys.path.insert(0, str(REPO / "fixtures" / "zoo"))
import roles as zoo


def _role_map(cls) -> RoleMap:
    with torch.device("meta"):
        model = cls()
    return RoleMap(ModuleGraph(model), ProbeMemo(_run).probe)


def _roles(role_map, path) -> set[Role]:
    answer = role_map.of(path)
    assert answer.read, answer.unread
    return answer.roles


def test_q_projection_as_wide_as_the_expert_count_is_a_query_not_a_router():
    rm = _role_map(zoo.NarrowQMoeModel)
    assert rm.graph.info("layers.0.self_attn.q_proj").module.out_features == zoo.EXPERTS
    assert _roles(rm, "layers.0.self_attn.q_proj") == {Role.QUERY}
    assert _roles(rm, "layers.0.self_attn.k_proj") == {Role.KEY}
    assert _roles(rm, "layers.0.self_attn.v_proj") == {Role.VALUE}
    assert rm.is_router("layers.0.self_attn.k_proj") is False
    assert rm.is_router("layers.0.mlp.gate") is True
    assert rm.of("layers.1.mlp.gate").block == "layers.1.mlp"


def test_fused_query_and_output_gate():
    rm = _role_map(zoo.QGateAttentionModel)
    answer = rm.of("layers.0.self_attn.q_proj")
    assert {(p.part, p.role) for p in answer.parts} == {("0", Role.QUERY), ("1", Role.OUTPUT_GATE)}
    gate = next(p for p in answer.parts if p.role is Role.OUTPUT_GATE)
    assert "attention output" in gate.evidence[0]
    assert rm.block_roles("layers.0.self_attn").output_gates == [("q_proj", "sigmoid", "the attention output")]


def test_single_projection_used_as_key_and_value():
    rm = _role_map(zoo.SharedKVModel)
    assert _roles(rm, "layers.0.attn.wkv") == {Role.KEY_VALUE}
    assert _roles(rm, "layers.0.attn.wq") == {Role.QUERY}
    assert _roles(rm, "layers.0.attn.wo") == {Role.OUTPUT}


def test_non_gated_moe_with_sigmoid_router():
    rm = _role_map(zoo.SigmoidRouterMoeModel)
    assert _roles(rm, "layers.0.mlp.gate") == {Role.ROUTER}
    # the router's sigmoid times the experts' output is routing, not a GLU
    assert _roles(rm, "layers.0.mlp.experts.up_proj") == {Role.LATENT}
    assert _roles(rm, "layers.0.mlp.experts.down_proj") == {Role.OUTPUT}
    routers = rm.block_roles("layers.0.mlp").routers
    assert [(r.projection, r.selection) for r in routers] == [("gate", "top-k")]
    assert "sigmoid scores" in routers[0].extras


def test_gated_norm_gate_is_an_output_gate_and_the_stream_an_ssm_input():
    rm = _role_map(zoo.GatedNormModel)
    answer = rm.of("layers.0.mixer.in_proj")
    assert {(p.part, p.role) for p in answer.parts} == {("0", Role.SSM_INPUT), ("1", Role.OUTPUT_GATE)}


def test_shared_expert_sigmoid_gate():
    rm = _role_map(zoo.SharedExpertGateModel)
    assert _roles(rm, "layers.0.mlp.shared_expert_gate") == {Role.OUTPUT_GATE}
    assert _roles(rm, "layers.0.mlp.shared_expert.gate_proj") == {Role.GLU_GATE}
    assert _roles(rm, "layers.0.mlp.shared_expert.up_proj") == {Role.GLU_UP}
    assert _roles(rm, "layers.0.mlp.gate") == {Role.ROUTER}
    assert rm.block_roles("layers.0.mlp").output_gates == [
        ("shared_expert_gate", "sigmoid", "the output of `shared_expert.down_proj`")]


@pytest.mark.parametrize("cls", [zoo.QuickGeluModel, zoo.TanhGeluModel])
def test_a_projection_that_scales_itself_is_an_activation_not_an_output_gate(cls):
    rm = _role_map(cls)
    assert Role.OUTPUT_GATE not in _roles(rm, "layers.0.mlp.fc1")
    assert rm.block_roles("layers.0.mlp").output_gates == []


def test_hash_router():
    rm = _role_map(zoo.HashRouterModel)
    assert _roles(rm, "layers.0.mlp.gate") == {Role.ROUTER}
    routers = rm.block_roles("layers.0.mlp").routers
    assert [(r.projection, r.selection) for r in routers] == [("gate", "hash")]
    assert "gate.tid2eid" in routers[0].extras[0]


class _NoForwardLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.router = torch.nn.Linear(zoo.D, zoo.EXPERTS)
        self.proj = torch.nn.Linear(zoo.D, zoo.D)


class _NoForwardModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(_NoForwardLayer() for _ in range(2))


def test_untraceable_block_says_what_could_not_be_read():
    rm = _role_map(_NoForwardModel)
    answer = rm.of("layers.0.router")
    assert not answer.read and "could not be traced" in answer.unread
    assert rm.is_router("layers.0.router") is None


def test_infinite_clamp_is_no_clamp():
    rm = _role_map(zoo.InfiniteClampModel)
    assert _roles(rm, "layers.0.proj") == {Role.LATENT}
    trace = _run(rm.graph.info("layers.0.proj").module).trace
    clamps = [op for op in trace.ops if op.name.startswith("clamp")]
    assert clamps and all(op.unbounded_clamp for op in clamps)
    from archlint.probe.extras import extra_ops

    assert extra_ops(trace) == []


@pytest.mark.parametrize("cls", [zoo.NarrowQMoeModel, zoo.SharedExpertGateModel])
def test_repeated_blocks_are_traced_once(cls):
    rm = _role_map(cls)
    for i in range(2):
        rm.of(f"layers.{i}.mlp.gate")
    assert len(rm._blocks) == 1


def test_router_bias_passed_in_by_the_parent_block():
    rm = _role_map(zoo.ParentBiasRouterModel)
    assert _roles(rm, "layers.0.mlp.gate") == {Role.ROUTER}
    (router,) = rm.block_roles("layers.0.mlp").routers
    assert "sigmoid scores" in router.extras
    assert "uses buffer `e_score_correction_bias`" in router.extras  # named under the traced block
    from support import findings

    (finding,) = findings("fixtures/zoo/roles.py:ParentBiasRouterModel", "GATE003")
    assert list(finding.paths) == ["layers.0.mlp.gate", "layers.1.mlp.gate"]
    extra = "uses buffer `e_score_correction_bias` of the enclosing block (passed in by the parent)"
    assert extra in finding.details["extras"]


def test_attention_changes_read_from_the_operands():
    for cls, words in ((zoo.TemperatureAttentionModel, "temperature tuning"),
                       (zoo.ScaledValueAttentionModel, "values are scaled by `v_scale`"),
                       (zoo.IndexedSparseAttentionModel, "sparse attention chosen by an indexer")):
        changes = _role_map(cls).block_roles("layers.0.self_attn").attention_changes
        assert len(changes) == 1 and words in changes[0], changes
    rm = _role_map(zoo.IndexedSparseAttentionModel)
    assert _roles(rm, "layers.0.self_attn.index_q") == {Role.INDEXER}
    assert rm.is_router("layers.0.self_attn.index_q") is False
    assert _role_map(zoo.QGateAttentionModel).block_roles("layers.0.self_attn").attention_changes == []


def test_an_attention_that_slices_its_mask_and_has_no_head_dim_is_traced():
    """Rotary tables over qk_rope_head_dim and a zero 4-D mask let the forward run, so its
    index projections are read as an indexer, never guessed routers by their width."""
    rm = _role_map(zoo.MaskFoldingSparseAttentionModel)
    assert _roles(rm, "layers.0.self_attn.index_q") == {Role.INDEXER}
    assert _roles(rm, "layers.0.self_attn.index_k") == {Role.INDEXER}
    assert rm.is_router("layers.0.self_attn.index_q") is False
    assert [p.role for p in rm.of("layers.0.self_attn.qkv_proj").parts] == [Role.QUERY, Role.KEY, Role.VALUE]


def test_indexer_traced_alone_is_no_router():
    rm = _role_map(zoo.IndexerMoeModel)
    assert _roles(rm, "layers.0.indexer.wk") == {Role.INDEXER}
    assert rm.is_router("layers.0.indexer.wq") is False
    assert rm.is_router("layers.0.mlp.gate") is True
