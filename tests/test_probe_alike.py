"""Layers share one trace exactly when their forward provably behaves alike: an index the
forward never reads does not split them, an index or a per-layer object it reads does."""

from __future__ import annotations

import sys
import threading

import pytest
import torch
from support import REPO, config, facts_cached
from torch import nn

from archlint.probe.alike import ProbeMemo, recording_reads
from archlint.probe.run import _run, run_probe

sys.path.insert(0, str(REPO / "fixtures" / "zoo"))
import alike as zoo


def _memo_over(model: nn.Module, suffix: str) -> tuple[ProbeMemo, dict[str, object]]:
    memo = ProbeMemo(_run)
    probes = {name: memo.probe(m) for name, m in model.named_modules() if name.endswith(suffix)}
    return memo, probes


def _meta(cls):
    with torch.device("meta"):
        return cls()


def test_an_index_the_forward_does_not_read_does_not_split_layers():
    memo, probes = _memo_over(_meta(zoo.IndexedLayersModel), ".mlp")
    assert len(probes) == 4 and memo.runs == 1
    assert len({id(p) for p in probes.values()}) == 1


def test_an_index_the_forward_reads_splits_layers_by_what_it_chooses():
    memo, probes = _memo_over(_meta(zoo.IndexedLayersModel), ".attn")
    assert memo.runs == 4  # the index itself is read: one trace per layer, never one for all
    squares = {name: any(op.name == "mul" for op in p.trace.ops) for name, p in probes.items()}
    assert squares == {"layers.0.attn": False, "layers.1.attn": True, "layers.2.attn": False,
                       "layers.3.attn": True}


def test_a_per_layer_object_the_forward_reads_splits_layers():
    memo, probes = _memo_over(_meta(zoo.ScaledLayersModel), ".mlp")
    assert memo.runs == 4
    scalars = [next(op for op in p.trace.ops if op.name == "mul").scalars for p in probes.values()]
    assert scalars == [[1.0], [2.0], [3.0], [4.0]]


def test_equal_plain_data_is_alike_and_a_changed_value_is_not():
    model = _meta(zoo.ScaledLayersModel)
    for layer in model.layers:
        layer["mlp"].scale = 2.5  # plain data now: equal values share
    memo, _ = _memo_over(model, ".mlp")
    assert memo.runs == 1
    model.layers[3]["mlp"].scale = -2.5
    memo, _ = _memo_over(model, ".mlp")
    assert memo.runs == 2


def test_each_shared_trace_is_the_trace_the_module_gives_on_its_own():
    model = _meta(zoo.IndexedLayersModel)
    memo = ProbeMemo(_run)
    for name, module in model.named_modules():
        if name.endswith((".attn", ".mlp")):
            assert memo.probe(module).trace.ops == run_probe(module).trace.ops, name


def test_reads_are_recorded_only_in_the_recording_thread_and_the_hook_is_removed():
    model = _meta(zoo.IndexedLayersModel)
    other = []
    with recording_reads() as reads:
        _ = model.layers[0].mlp.layer_idx
        thread = threading.Thread(target=lambda: other.append(model.layers[1].mlp.layer_idx))
        thread.start()
        thread.join()
    assert (id(model.layers[0].mlp), "layer_idx") in reads.attributes
    assert (id(model.layers[1].mlp), "layer_idx") not in reads.attributes
    assert "__getattribute__" not in vars(nn.Module)


def test_a_class_with_its_own_attribute_lookup_shares_only_with_identical_modules():
    class Looked(zoo.IndexedMlp):
        def __getattribute__(self, name):
            return super().__getattribute__(name)

    with torch.device("meta"):
        layers = [Looked(i) for i in range(3)]
    memo = ProbeMemo(_run)
    for layer in layers:
        memo.probe(layer)
    assert memo.runs == 3


@pytest.mark.parametrize(("target", "prefix", "layers", "probes"), [
    # sliding and full attention have one structure (the shrunk copy's key) but read
    # another `sliding_window`: two traces
    ("google__gemma-3-1b-it", "model.layers", 26, 2),
    ("meta-llama__Llama-3.1-8B", "model.layers", 32, 1),
])
def test_real_attention_layers(target, prefix, layers, probes):
    graph = facts_cached(config(target)).graph
    attentions = [graph.info(f"{prefix}.{i}.self_attn") for i in range(layers)]
    memo = ProbeMemo(_run)
    for info in attentions:
        assert memo.probe(info.module).ok
    assert memo.runs == probes
    if target.startswith("google__gemma-3"):
        assert len({info.structure_key for info in attentions}) == 1
