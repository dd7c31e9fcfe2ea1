"""Bare model types that do not build as first chosen: whose fault it is, and what archlint
says. transformers' own default config that no class of the type can build is a
``bad-config`` naming transformers; a class needing a missing package is one line naming
the package; where another class of the type (or the config without archlint's filled-in
towers) builds, that one is linted and the reason says why."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers.initialization import meta_device_safe_creation_ops
from transformers.utils.import_utils import BACKENDS_MAPPING

from archlint.build import build, missing_package
from archlint.errors import TargetError
from archlint.resolve import resolve


@pytest.mark.parametrize("model_type", ["hunyuan_v1_dense", "dbrx"])
def test_a_default_config_transformers_cannot_build_is_named_as_such(model_type):
    config = transformers.AutoConfig.for_model(model_type)
    cls = transformers.AutoModelForCausalLM._model_mapping[type(config)]
    with pytest.raises(Exception) as direct, torch.device("meta"), meta_device_safe_creation_ops():
        cls._from_config(config)  # the oracle: transformers itself, on its own default config
    with pytest.raises(TargetError) as raised:
        build(resolve(model_type))
    assert raised.value.kind == "bad-config"
    message = raised.value.message
    assert f"transformers {transformers.__version__} cannot build its own default config" in message
    assert type(direct.value).__name__ in message and "published config.json" in message


@pytest.mark.parametrize(("backend", "package"),
                         [("timm", "timm"), ("vision", "PIL"), ("natten", "natten"), ("detectron2", "detectron2")])
def test_a_missing_optional_package_is_one_line_naming_it(backend, package):
    error = ImportError(BACKENDS_MAPPING[backend][1].format("SomeBackbone"))  # transformers' own message
    line = missing_package(error)
    assert line.startswith(f"SomeBackbone needs the optional package {package}, which is not installed")
    assert "\n" not in line
    assert missing_package(ImportError("No module named 'x'")) == ""
    assert missing_package(ValueError(str(error))) == ""


@pytest.mark.parametrize(
    ("model_type", "class_name", "reason"),
    [
        # the causal-LM head asserts is_decoder=True, which the default config is not
        ("reformer", "ReformerModel", "ReformerModelWithLMHead raises AssertionError"),
        # the Auto table maps the config to a tuple (full model, base model)
        ("funnel", "FunnelModel", "AutoModel"),
        # a sub-component class named for what it is, not *Model
        ("blt_patcher", "BltPatcher", "sub-component"),
        # the default audio tower archlint fills in lacks a field the projector reads
        ("nemotron_h_omni", "NemotronH_Omni_Reasoning_V3", "optional towers left out"),
    ],
)
def test_another_class_or_the_unfilled_config_builds(model_type, class_name, reason):
    built = build(resolve(model_type))
    assert built.class_name == class_name
    assert reason in built.class_reason
