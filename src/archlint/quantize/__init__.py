"""Quantization preview: transformers' own quantizer run on a copy of the meta model.

Entry point: :func:`preview` (``--quantization`` as a :class:`QuantizationRequest`, or the
config's own ``quantization_config``) returning a :class:`QuantizationPreview`.
"""

from .preview import QuantizationPreview, preview, wanted
from .request import PRESETS, QuantizationRequest, config_quantization

__all__ = ["PRESETS", "QuantizationPreview", "QuantizationRequest", "config_quantization", "preview", "wanted"]
