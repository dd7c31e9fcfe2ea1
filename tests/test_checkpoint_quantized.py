"""Pre-quantized checkpoints: transformers' quantizer in the loader path, checked against from_pretrained.

The oracle is ``from_pretrained(..., ignore_mismatched_sizes=True)`` on the tiny real-weight
fixtures, its ``LoadStateDictInfo`` recorded as it is handed to transformers' loading
report (``from_pretrained`` raises right after that report when a conversion failed, so
``output_loading_info`` alone would return nothing for those cases).

* MXFP4 (gpt-oss): on this CPU-only machine ``from_pretrained`` itself takes the
  dequantizing path (no Triton, no ``kernels``), the path archlint drives: the oracle runs
  unpatched.
* Fine-grained FP8 (DeepSeek-V3): archlint reports the native path of a GPU machine. On
  CPU ``from_pretrained`` falls back to dequantizing, so the oracle is run with
  ``torch.cuda.is_available``/``get_device_capability`` answering as an FP8 GPU (9.0) would:
  ``validate_environment`` then keeps the native path and everything else of
  ``from_pretrained`` (module replacement, conversions, loading into ``FP8Linear``) runs
  for real on CPU tensors.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from unittest import mock

import pytest
from support import REPO

from archlint import lint
from archlint.findings import Severity

CHECKPOINTS = REPO / "fixtures" / "checkpoints"
MXFP4 = CHECKPOINTS / "tiny-gpt-oss-mxfp4"
FP8 = CHECKPOINTS / "tiny-deepseek-v3-fp8"


def _from_pretrained_report(folder, *, fp8_gpu: bool = False):
    """``(missing, unexpected, mismatched, conversion error keys)`` as from_pretrained reports them."""
    import transformers
    import transformers.modeling_utils as modeling_utils
    from transformers import AutoConfig

    seen = {}
    report = modeling_utils.log_state_dict_report

    def recording(*args, **kwargs):
        seen["info"] = kwargs["loading_info"]
        return report(*args, **kwargs)

    cls = getattr(transformers, AutoConfig.from_pretrained(folder).architectures[0])
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(modeling_utils, "log_state_dict_report", recording))
        if fp8_gpu:
            stack.enter_context(mock.patch("torch.cuda.is_available", lambda: True))
            stack.enter_context(mock.patch("torch.cuda.get_device_capability", lambda *args: (9, 0)))
        try:
            cls.from_pretrained(folder, ignore_mismatched_sizes=True)
        except RuntimeError:  # raised after the report (a failed conversion; a missing fp8 weight initialised on CPU)
            pass
    info = seen["info"]
    return (sorted(info.missing_keys), sorted(info.unexpected_keys),
            sorted((k, list(a), list(b)) for k, a, b in info.mismatched_keys), sorted(info.conversion_errors))


def _archlint_report(folder):
    result = lint(str(folder), select=["CKPT"]).results[0]
    assert result.error is None and not result.rule_errors, (result.error, result.rule_errors)
    found = result.checkpoint
    assert found.unavailable is None, found.unavailable
    return result, (found.missing, found.unexpected, found.mismatched, sorted(found.conversion_errors))


def _edited(tmp_path, source, name, edit):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / name
    shutil.copytree(source, folder)
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _rename(old, new):
    return lambda tensors: tensors.__setitem__(new, tensors.pop(old))


@pytest.mark.parametrize(("folder", "method", "dequantize", "fp8_gpu"),
                         [(MXFP4, "mxfp4", True, False), (FP8, "fp8", False, True)], ids=["mxfp4", "fp8"])
def test_complete_prequantized_checkpoint_is_quiet(folder, method, dequantize, fp8_gpu):
    result, ours = _archlint_report(folder)
    assert ours == ([], [], [], []) == _from_pretrained_report(folder, fp8_gpu=fp8_gpu)
    assert result.checkpoint.quantization["method"] == method
    assert result.checkpoint.quantization["dequantize"] is dequantize
    loud = [(f.code, f.message) for f in result.findings if f.severity >= Severity.WARNING]
    assert not loud, loud  # CKPT003 does not count fp8 storage as a dtype mismatch


def test_the_fixtures_use_the_real_serialized_names():
    from archlint.checkpoint import read_local

    mxfp4 = read_local(MXFP4).tensors
    block, scale = mxfp4["model.layers.0.mlp.experts.gate_up_proj_blocks"], \
        mxfp4["model.layers.0.mlp.experts.gate_up_proj_scales"]
    assert (block.dtype, scale.dtype) == ("U8", "U8") and block.shape[:3] == scale.shape and block.shape[3] == 16
    fp8 = read_local(FP8).tensors
    assert fp8["model.layers.1.mlp.experts.3.down_proj.weight"].dtype == "F8_E4M3"
    assert fp8["model.layers.1.mlp.experts.3.down_proj.weight_scale_inv"].dtype == "F32"
    assert fp8["model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"].shape == (2, 4)  # 24x64 in 16x16 blocks
    assert json.loads((FP8 / "config.json").read_text())["quantization_config"]["quant_method"] == "fp8"


MXFP4_EDITS = {
    "dropped-scales": lambda t: t.pop("model.layers.1.mlp.experts.down_proj_scales"),
    "renamed-blocks": _rename("model.layers.0.mlp.experts.gate_up_proj_blocks",
                              "model.layers.0.mlp.experts.gate_up_proj.blocks"),
    "dropped-bias": lambda t: t.pop("model.layers.0.mlp.experts.gate_up_proj_bias"),
    "cut-blocks": lambda t: t.__setitem__("model.layers.0.mlp.experts.down_proj_blocks",
                                          t["model.layers.0.mlp.experts.down_proj_blocks"][:3].clone()),
}


@pytest.mark.parametrize("edit", sorted(MXFP4_EDITS))
def test_mxfp4_checkpoint_is_flagged_as_from_pretrained_reports_it(tmp_path, edit):
    folder = _edited(tmp_path, MXFP4, edit, MXFP4_EDITS[edit])
    truth = _from_pretrained_report(folder)
    assert truth != ([], [], [], [])
    result, ours = _archlint_report(folder)
    assert ours == truth
    [finding] = [f for f in result.findings if f.code == "CKPT001"]
    assert finding.details["missing"] == truth[0]
    if truth[3]:  # a failed conversion: from_pretrained raises, and the finding says so and why
        assert "from_pretrained raises" in finding.message
        assert sorted(finding.details["conversion_errors"]) == truth[3]
        cause = next(iter(finding.details["conversion_errors"].values()))
        assert "Mxfp4Dequantize" in cause and ("KeyError" in cause or "AssertionError" in cause), cause


FP8_EDITS = {
    "dropped-attention-scale": lambda t: t.pop("model.layers.0.self_attn.o_proj.weight_scale_inv"),
    "dropped-expert-scale": lambda t: t.pop("model.layers.1.mlp.experts.2.down_proj.weight_scale_inv"),
    "renamed-weight": _rename("model.layers.1.self_attn.q_b_proj.weight",
                              "model.layers.1.self_attn.q_b_proj.linear.weight"),
    "cut-scale": lambda t: t.__setitem__("model.layers.0.self_attn.o_proj.weight_scale_inv",
                                         t["model.layers.0.self_attn.o_proj.weight_scale_inv"][:2].clone()),
}


@pytest.mark.parametrize("edit", sorted(FP8_EDITS))
def test_fp8_checkpoint_is_flagged_as_from_pretrained_reports_it_on_an_fp8_gpu(tmp_path, edit):
    folder = _edited(tmp_path, FP8, edit, FP8_EDITS[edit])
    truth = _from_pretrained_report(folder, fp8_gpu=True)
    assert truth != ([], [], [], [])
    result, ours = _archlint_report(folder)
    assert ours == truth
    assert {f.code for f in result.findings} & {"CKPT001", "CKPT002"}


def test_without_a_gpu_from_pretrained_loads_a_weight_whose_fp8_scale_is_missing_unscaled(tmp_path):
    """Why archlint reports FP8's native path: on CPU from_pretrained dequantizes, and a
    dropped scale goes unreported there (the fp8 values are cast as they are)."""
    folder = _edited(tmp_path, FP8, "no-scale", FP8_EDITS["dropped-attention-scale"])
    assert _from_pretrained_report(folder) == ([], [], [], [])
    assert _archlint_report(folder)[1][0] == ["model.layers.0.self_attn.o_proj.weight_scale_inv"]


@pytest.mark.parametrize(("quantization", "why"), [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
     "fp8 and mxfp4 only; bitsandbytes's loader path (Bnb4bitDeserialize) has not been checked"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128},
     "fp8 and mxfp4 only, and on this machine from_pretrained refuses to load gptq: ImportError: "),
], ids=["bnb", "gptq"])
def test_a_method_archlint_does_not_drive_is_not_checked_and_says_why(tmp_path, quantization, why):
    from click.testing import CliRunner

    from archlint.cli import main

    folder = tmp_path / quantization["quant_method"]
    shutil.copytree(CHECKPOINTS / "tiny-llama", folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config))
    result = lint(str(folder), select=["CKPT"]).results[0]
    message = result.checkpoint.unavailable
    assert message.startswith(f"a pre-quantized checkpoint ({quantization['quant_method']}): ") and why in message
    assert not [f for f in result.findings if f.code.startswith("CKPT")]
    out = CliRunner().invoke(main, [str(folder), "--select", "CKPT", "--fail-on", "never"])
    assert "not checked: a pre-quantized checkpoint" in " ".join(out.output.split())


def test_an_unknown_quant_method_loads_as_unquantized_as_in_transformers(tmp_path):
    folder = tmp_path / "unknown"
    shutil.copytree(CHECKPOINTS / "tiny-llama", folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "no-such-method"}
    (folder / "config.json").write_text(json.dumps(config))
    result = lint(str(folder), select=["CKPT"]).results[0]
    assert result.checkpoint.unavailable is None and result.checkpoint.quantization is None
    assert (result.checkpoint.missing, result.checkpoint.unexpected) == ([], [])


def _gpt_oss_20b_headers(drop: str | None = None):
    """gpt-oss-20b's checkpoint as header records, in its layout: every expert projection as
    ``*_blocks`` (uint8 ``[32, out, in/32, 16]``) and ``*_scales`` (uint8 ``[32, out, in/32]``),
    the rest bf16 under the model's own names."""
    from archlint.build import build
    from archlint.checkpoint import Headers
    from archlint.resolve import resolve

    model = build(resolve(str(REPO / "fixtures" / "configs" / "openai__gpt-oss-20b"))).module
    header = {}
    for key, value in model.state_dict().items():
        if key.endswith(("experts.gate_up_proj", "experts.down_proj")):
            experts, inputs, outputs = value.shape
            header[f"{key}_blocks"] = {"dtype": "U8", "shape": [experts, outputs, inputs // 32, 16]}
            header[f"{key}_scales"] = {"dtype": "U8", "shape": [experts, outputs, inputs // 32]}
        else:
            header[key] = {"dtype": "BF16", "shape": list(value.shape)}
    header.pop(drop, None)
    headers = Headers("gpt-oss-20b")
    headers.add_file("model.safetensors", header)
    return model, headers


def test_gpt_oss_20b_in_its_real_layout_is_quiet_and_a_dropped_scale_is_not():
    from archlint.checkpoint import compare

    model, headers = _gpt_oss_20b_headers()
    assert headers.tensors["model.layers.0.mlp.experts.gate_up_proj_blocks"].shape == (32, 5760, 90, 16)
    assert headers.tensors["model.layers.23.mlp.experts.down_proj_scales"].shape == (32, 2880, 90)
    found = compare(model, headers)
    assert found.unavailable is None and found.quantization["method"] == "mxfp4"
    assert (found.missing, found.unexpected, found.mismatched, found.conversion_errors) == ([], [], [], {})

    model, headers = _gpt_oss_20b_headers(drop="model.layers.5.mlp.experts.down_proj_scales")
    found = compare(model, headers)
    assert found.missing == ["model.layers.5.mlp.experts.down_proj"]
    assert list(found.conversion_errors) == ["model.layers.5.mlp.experts.down_proj"]
