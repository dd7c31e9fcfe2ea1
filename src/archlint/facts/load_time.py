"""Load-time facts: what ``from_pretrained`` would do with a quantization config and a checkpoint.

* ``quantization`` -- transformers' own quantizer run on a copy of the meta model
  (:mod:`archlint.quantize`), for ``--quantization`` or the config's own
  ``quantization_config``; None when neither is given.
* ``checkpoint``   -- transformers' loader run on meta tensors built from the checkpoint's
  safetensors headers (:mod:`archlint.checkpoint`); None without a checkpoint to read.
"""

from __future__ import annotations

from ..checkpoint import CheckpointAgreement, agreement
from ..errors import one_line
from ..fork import MISSING
from ..quantize import QuantizationPreview, preview, wanted
from .base import Facts, fact


@fact(phase="quantization")
def quantization(facts: Facts) -> QuantizationPreview | None:
    """The quantization preview, when a method is asked for or the config ships quantized."""
    if not wanted(facts.quantization_request, facts.config):
        return None
    ahead = facts.ahead("quantization")  # computed by the worker (facts/ahead.py)
    if ahead is not MISSING:
        return ahead
    try:
        return preview(facts.built.module, facts.config, facts.quantization_request, tower_of=facts.graph.tower_of,
                       plan=facts.plan)
    except Exception as e:  # a model the preview cannot read must not stop the lint; the report says so
        label = facts.quantization_request.label if facts.quantization_request else "config.json quantization_config"
        return QuantizationPreview("unknown", label, "unknown", unavailable=f"the preview failed: {one_line(e)}")


@fact(phase="checkpoint")
def checkpoint(facts: Facts) -> CheckpointAgreement | None:
    """The loader's verdict on the checkpoint's headers, when there is a checkpoint to read."""
    if facts.checkpoint_source is None:
        return None
    return agreement(facts.built.module, facts.checkpoint_source)
