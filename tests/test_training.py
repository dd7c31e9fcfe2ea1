"""TRAIN001 (fake training forward) and TRAIN003 (cache-coupled layers) on real configs,
the zoo, and the shrunk copy the forward runs on."""

from __future__ import annotations

import pytest
import torch
from packaging.version import Version
from support import config, findings, fresh_facts, lint_cached

from archlint.findings import Confidence, Severity

GEMMA4_E2B = config("google__gemma-4-E2B-it")
LLAMA = config("meta-llama__Llama-3.1-8B")


def _context(target: str):
    return fresh_facts(target)


def _built_and_graph(target: str):
    ctx = _context(target)
    return ctx.built, ctx.graph


# -- TRAIN001 ------------------------------------------------------------------------------


def test_molmo2_requires_mm_token_type_ids_in_training():
    (finding,) = findings("molmo2", "TRAIN001")
    assert finding.severity == Severity.ERROR
    assert finding.paths == ("model",)  # Molmo2Model.forward raises
    assert finding.details["input"] == "mm_token_type_ids"
    assert finding.details["with_input"] == "ok"  # supplying it lets the forward through
    assert "is required as a model input when training" in finding.details["error"]
    assert 'batch["mm_token_type_ids"] = torch.zeros_like(batch["input_ids"])' in finding.fix.detail
    assert finding.details["ran_on"].startswith("shrunk copy")


@pytest.mark.parametrize("target", [LLAMA, GEMMA4_E2B], ids=["llama-3.1", "gemma-4-e2b"])
def test_no_required_input_when_the_forward_runs(target):
    """Gemma-4 required `mm_token_type_ids` until transformers fixed it; 5.24 does not."""
    result = lint_cached(target).results[0]
    assert [f for f in result.findings if f.code == "TRAIN001"] == []
    assert result.timings["forward"] > 0  # it did run (and --debug shows its cost)


def test_gemma4_as_it_was_before_the_fix_requires_mm_token_type_ids(monkeypatch):
    """Gemma-4's model forward raised this in training until transformers #45200 was
    fixed; put the check back and the fake forward finds it on the real class."""
    from transformers.models.gemma4 import modeling_gemma4

    from archlint import lint

    original = modeling_gemma4.Gemma4Model.forward

    def forward(self, *args, mm_token_type_ids=None, **kwargs):
        if self.training and mm_token_type_ids is None:
            raise ValueError("`mm_token_type_ids` is required as a model input when training")
        return original(self, *args, mm_token_type_ids=mm_token_type_ids, **kwargs)

    monkeypatch.setattr(modeling_gemma4.Gemma4Model, "forward", forward)
    (finding,) = lint(GEMMA4_E2B, select=["TRAIN001"]).results[0].findings
    assert (finding.paths, finding.details["input"]) == (("model",), "mm_token_type_ids")
    assert finding.details["with_input"] == "ok"


def test_an_input_the_model_needs_in_inference_too_is_info_and_steps_are_not_judged():
    """An image-text model run on text alone: the forward needs `pixel_values` in eval mode as
    well, so it is what the model runs on, not a trap of training; zeros shaped like the
    token ids are no image, so no LoRA step can judge the adapters by that forward."""
    target = "fixtures/zoo/training.py:NeedsImages"
    (finding,) = findings(target, "TRAIN001")
    assert finding.severity == Severity.INFO and finding.details["input"] == "pixel_values"
    assert "in inference as well" in finding.message
    assert finding.details["inference"].startswith("ValueError: You have to specify pixel_values")
    assert finding.details["with_input"] != "ok"  # zeros shaped like input_ids are no image
    step = _context(target).training_steps.check({"target_modules": ["head"], "r": 4})
    assert step.ok and step.checked == ("inject",) and "forward and backward not checked" in step.note


def test_an_error_naming_an_input_that_does_not_help_is_not_a_missing_input():
    (finding,) = findings("fixtures/zoo/training.py:NamesButNeedsNot", "TRAIN001")
    assert (finding.severity, finding.confidence) == (Severity.INFO, Confidence.LOW)
    assert finding.details["forward"] == "failed"
    assert "input" not in finding.details and finding.fix is None


def test_a_forward_fake_tensors_cannot_run_is_reported_as_not_checked():
    (finding,) = findings("fixtures/zoo/training.py:DataDependent", "TRAIN001")
    assert (finding.severity, finding.confidence) == (Severity.INFO, Confidence.LOW)
    assert "could not run" in finding.message


def test_models_without_a_token_forward_are_not_run():
    result = lint_cached("fixtures/zoo/training.py:KVSharing").results[0]
    assert [f for f in result.findings if f.code == "TRAIN001"] == []
    ctx = _context("fixtures/zoo/training.py:KVSharing")
    outcome = ctx.training_forward
    assert (outcome.status, outcome.model, outcome.seconds) == ("not-applicable", "", 0.0)  # nothing ran
    assert ctx.timings["forward"] < 0.05  # the phase --debug shows costs only the signature check


def test_the_forward_leaves_the_model_in_its_mode():
    ctx = _context("fixtures/zoo/training.py:NeedsTokenTypes")
    ctx.built.module.eval()
    assert ctx.training_forward.missing == "token_type_ids"
    assert not any(m.training for m in ctx.built.module.modules())


def test_the_training_forward_keeps_no_cache():
    """Inkling2-Loop deep-copies its cache layers in the forward; under fake tensors torch
    then fails to copy their storage (and the process could later crash). Training keeps no
    cache, so neither does the forward TRAIN001 runs."""
    outcome = _context("inkling2_loop_text").training_forward
    assert outcome.status == "ok", outcome.error


def test_the_training_forward_leaves_the_models_own_parameters_in_place():
    """SwitchTransformers' router casts its classifier with `.to(dtype)` in every forward; the
    fake forward of the model itself (it has no shrunk copy) replaced the user's meta weights
    by fake tensors of a dead mode, and a probe of that router afterwards could not move it:
    DIST002 and LORA007 read one layer's router as unknown (info) where every other layer's is
    a router, depending on whether the probe ran before or after the forward."""
    ctx = _context("switch_transformers")
    before = {name: p for name, p in ctx.built.module.named_parameters()}
    assert ctx.training_forward.model == "the model itself"
    after = dict(ctx.built.module.named_parameters())
    assert after.keys() == before.keys() and all(after[n] is p for n, p in before.items())  # the very same objects
    assert all(type(p) is torch.nn.Parameter for p in before.values())
    assert ctx.roles.is_router("encoder.block.1.layer.1.mlp.router.classifier") is True


def test_a_finding_carries_no_time_measured_in_the_run():
    """A report must not change from one run to the next: how long the forward took is
    ``--debug``'s to show, not a finding's detail."""
    from archlint import lint

    report = lint("fixtures/zoo/training.py:NeedsTokenTypes", select=["TRAIN001"])
    (finding,) = report.results[0].findings
    assert finding.details["forward"] == "missing-input"
    assert not [key for key in finding.details if "second" in key or "time" in key]


# -- the shrunk copy -----------------------------------------------------------------------


def test_gemma4_shrinks_to_one_layer_per_structure_keeping_kv_sharing():
    from archlint.shrink import shrunk_copy

    ctx = _context(GEMMA4_E2B)
    copy = shrunk_copy(ctx.built, ctx.graph)
    text = copy.module.model.language_model
    # sliding/full x own/shared K/V: first of each, and the last layer
    assert copy.kept["model.language_model.layers"] == (0, 4, 15, 34)
    assert text.config.layer_types == ["sliding_attention", "full_attention"] * 2
    assert text.config.num_kv_shared_layers == 2
    assert [hasattr(layer.self_attn, "k_proj") for layer in text.layers] == [True, True, False, False]
    assert copy.original_path("model.language_model.layers.3.self_attn") == "model.language_model.layers.34.self_attn"


def test_a_shrink_that_breaks_the_config_falls_back_to_a_smaller_one(monkeypatch):
    """DeepSeek-V3 places its dense layers by index (first_k_dense_replace=3): the copy moves
    that number (0 and 60 kept); without the move, the first-layers copy is all dense and
    the prefix up to the first MoE layer is kept instead."""
    from archlint import shrink

    built, graph = _built_and_graph(config("deepseek-ai__DeepSeek-V3"))
    assert shrink.shrunk_copy(built, graph).kept == {"model.layers": (0, 60)}
    monkeypatch.setattr(shrink, "_moved_boundaries", lambda *args: iter(()))
    assert shrink.shrunk_copy(built, graph).kept == {"model.layers": (0, 1, 2, 3, 60)}


def test_a_layer_count_under_another_name_is_shrunk():
    """GPT-2 stores `num_hidden_layers` as `n_layer` (its config's attribute_map)."""
    from archlint.shrink import shrunk_copy

    copy = shrunk_copy(*_built_and_graph(config("openai-community__gpt2-xl")))
    assert copy.kept == {"transformer.h": (0, 47)}
    assert copy.module.config.n_layer == 2


def test_layers_the_config_tells_apart_are_kept_apart():
    """Gemma-3's sliding and full attention layers have the same modules; Gemma-3n's also
    differ by MLP width and activation sparsity, per-layer lists not named for layers."""
    from archlint.shrink import shrunk_copy

    copy = shrunk_copy(*_built_and_graph(config("google__gemma-3-1b-it")))
    assert sorted(copy.module.config.layer_types) == ["full_attention", "sliding_attention"]

    built, graph = _built_and_graph("gemma3n_text")
    copy = shrunk_copy(built, graph)
    cfg = built.module.config
    shared_from = cfg.num_hidden_layers - cfg.num_kv_shared_layers

    def kinds(c, indices):
        return {(c.layer_types[i], c.intermediate_size[i], c.activation_sparsity_pattern[i], j >= shared_from)
                for j, i in indices}

    kept = copy.kept["model.layers"]
    assert len(kept) < cfg.num_hidden_layers
    assert kinds(cfg, enumerate(range(cfg.num_hidden_layers))) == kinds(cfg, ((i, i) for i in kept))
    new = copy.module.config
    assert [new.layer_types[i] for i in range(len(kept))] == [cfg.layer_types[i] for i in kept]


def test_a_block_tied_across_layers_keeps_two_layers_of_its_structure():
    """Zamba ties one transformer block across all its hybrid layers; transformers cannot tie
    it with one hybrid layer, so the copy keeps the first two of each structure."""
    from archlint.shrink import shrunk_copy

    built, graph = _built_and_graph("zamba")
    copy = shrunk_copy(built, graph)
    assert copy is not None
    kinds = built.module.config.layers_block_type
    first_two = sorted({i for kind in set(kinds) for i in [j for j, k in enumerate(kinds) if k == kind][:2]})
    assert copy.kept == {"model.layers": (*first_two, len(kinds) - 1)}
    layers = copy.module.model.layers
    hybrid = [layer for layer in layers if hasattr(layer, "shared_transf")]
    original = [layer for layer in built.module.model.layers if hasattr(layer, "shared_transf")]
    def tied(a, b):
        return a.shared_transf.self_attn.q_proj.weight is b.shared_transf.self_attn.q_proj.weight

    assert len(hybrid) == 2 and tied(*hybrid) and tied(*original[:2])  # tied in the copy as in the model


# -- TRAIN003 ------------------------------------------------------------------------------


def test_gemma4_kv_shared_layers_are_info_with_the_installed_transformers():
    (finding,) = findings(GEMMA4_E2B, "TRAIN003")
    assert finding.severity == Severity.INFO  # 5.24 >= 5.5.2
    assert finding.confidence == Confidence.HIGH  # config and structure agree
    assert finding.pattern == "model.language_model.layers.*.self_attn"
    assert set(finding.paths) == {f"model.language_model.layers.{i}.self_attn" for i in range(15, 35)}
    assert finding.details["carries_fix"] is True and finding.details["num_kv_shared_layers"] == 20
    assert "transformers>=5.5.2" in finding.fix.detail


def test_gemma4_kv_shared_layers_warn_before_the_fix(monkeypatch):
    from archlint import lint
    from archlint.rules import train003_cache_coupled_layers as rule

    monkeypatch.setattr(rule, "installed_transformers_version", lambda: Version("5.5.0"))
    (finding,) = lint(GEMMA4_E2B, select=["TRAIN003"]).results[0].findings
    assert finding.severity == Severity.WARNING
    assert "transformers 5.5.0 hands them over through the KV cache" in finding.message
    assert 'pip install "transformers>=5.5.2"' in finding.fix.detail
    assert len(finding.paths) == 20


def test_a_plain_llama_has_no_warning_or_error():
    loud = [f for f in findings(LLAMA) if f.severity >= Severity.WARNING]
    assert loud == [], [(f.code, f.pattern) for f in loud]
