"""The module graph: aliases, ties, patterns and structural groups."""

from __future__ import annotations

import torch
from support import config, meta_model
from torch import nn

from archlint.findings import collapse_paths, merge_findings
from archlint.graph import ModuleGraph, star_indices


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        block = nn.Linear(4, 4)
        self.a = block
        self.b = block  # the same module under two names
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 8)])
        self.head = nn.Linear(4, 4)
        self.head.weight = self.layers[0].weight  # tied


def test_shared_module_is_one_node_with_both_names():
    graph = ModuleGraph(Shared())
    assert graph.info("a").names == ("a", "b")
    assert "b" not in graph.nx.nodes
    assert graph.nx.edges["", "a"]["attr"] in ("a", "b")


def test_tied_parameters_are_counted_once_and_name_each_other():
    graph = ModuleGraph(Shared())
    assert graph.info("head").parameters["weight"].tied_to == ("layers.0.weight",)
    unique = 4 * 4 + 4 + (4 * 4 + 4) * 2 + (4 * 8 + 8) + 4  # a, layers.0-2, head bias (weight tied)
    assert graph.parameter_count() == unique


def test_groups_split_by_structure_within_a_pattern():
    graph = ModuleGraph(Shared())
    layer_groups = [g for g in graph.groups if g.pattern == "layers.*"]
    assert sorted(g.paths for g in layer_groups) == [("layers.0", "layers.1"), ("layers.2",)]


def test_patterns_collapse_indices():
    assert star_indices("model.layers.12.mlp.experts.3") == "model.layers.*.mlp.experts.*"
    assert collapse_paths(["a.layers.0.q", "a.layers.7.q"]) == "a.layers.*.q"
    assert collapse_paths(["a.x.0", "a.y.0"]) == "a.{x,y}.0"


def test_real_model_repeated_layers_are_grouped():
    graph = ModuleGraph(meta_model(config("meta-llama__Llama-3.1-8B")))
    (group,) = [g for g in graph.groups if g.pattern == "model.layers.*"]
    assert len(group.paths) == 32
    assert graph.info("model.layers.0").tower == "model"
    assert graph.info("lm_head").tower == ""
    assert all(p.device.type == "meta" for p in graph.root.parameters())


def test_merge_keeps_findings_with_different_messages_apart():
    from archlint.findings import Confidence, Finding, Severity

    def f(path, msg):
        return Finding("X001", "x", Severity.INFO, Confidence.HIGH, msg, "C", (path,))

    merged = merge_findings([f("l.0.q", "m"), f("l.1.q", "m"), f("l.2.q", "other")])
    assert [(m.pattern, m.count) for m in merged] == [("l.*.q", 2), ("l.2.q", 1)]


def test_no_storage_guard_refuses_real_weights():
    import pytest

    from archlint.build import assert_no_storage
    from archlint.errors import TargetError

    assert assert_no_storage(nn.Linear(4, 4, device="meta"), "t") == 0
    with pytest.raises(TargetError, match="allocated"):
        assert_no_storage(nn.Linear(2048, 2048), "t")
    torch.manual_seed(0)
