"""What the user asks to quantize with: ``--quantization`` into a transformers quantization config.

``bnb-4bit``, ``bnb-8bit`` and ``fp8`` are the configs people pass to ``from_pretrained``
for QLoRA-style loading (``BitsAndBytesConfig(load_in_4bit=True, ...)``,
``BitsAndBytesConfig(load_in_8bit=True)``, ``FineGrainedFP8Config()``); any other value is a
JSON file holding a ``quantization_config`` (the object itself, or a config.json that
carries one), read by transformers' own ``AutoQuantizationConfig.from_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: The shorthands ``--quantization`` takes, with what they mean.
PRESETS = {
    "bnb-4bit": "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_compute_dtype=bfloat16)",
    "bnb-8bit": "BitsAndBytesConfig(load_in_8bit=True)",
    "fp8": "FineGrainedFP8Config()",
}

#: Keys of a quantization config that name the modules the method must leave alone.
SKIP_LIST_KEYS = ("llm_int8_skip_modules", "modules_to_not_convert")


@dataclass(frozen=True)
class QuantizationRequest:
    """A quantization the user asked for: a preset name or the raw dict of a JSON file."""

    label: str  # "bnb-4bit" | "bnb-8bit" | "fp8" | the file path
    raw: dict[str, Any] | None = None  # the file's quantization_config, for a file

    @classmethod
    def parse(cls, value: str) -> QuantizationRequest:
        """From the ``--quantization`` value; a bad file or preset is a :class:`UsageError`."""
        value = value.strip()
        if value in PRESETS:
            return cls(value)
        path = Path(value).expanduser()
        if not path.is_file():
            raise UsageError(f"--quantization {value!r}: expected one of {', '.join(PRESETS)} or a JSON file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(f"--quantization {value}: cannot read it as JSON ({e})") from e
        if isinstance(data, dict) and isinstance(data.get("quantization_config"), dict):
            data = data["quantization_config"]
        if not isinstance(data, dict) or "quant_method" not in data and not _is_bnb(data):
            raise UsageError(f"--quantization {value}: no `quant_method` (a transformers quantization_config)")
        return cls(str(value), dict(data))

    @property
    def skip_list(self) -> tuple[str, list[str]] | None:
        """``(key, entries)`` when the user's config names its own skip list."""
        for key in SKIP_LIST_KEYS:
            if self.raw is not None and self.raw.get(key) is not None:
                return key, list(self.raw[key])
        return None

    def config(self):
        """The transformers ``QuantizationConfigMixin`` this request stands for."""
        import torch
        from transformers import BitsAndBytesConfig, FineGrainedFP8Config
        from transformers.quantizers.auto import AutoQuantizationConfig

        if self.label == "bnb-4bit":
            return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_compute_dtype=torch.bfloat16)
        if self.label == "bnb-8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        if self.label == "fp8":
            return FineGrainedFP8Config()
        raw = dict(self.raw or {})
        if _is_bnb(raw) and "quant_method" not in raw:
            raw["quant_method"] = "bitsandbytes"
        try:
            return AutoQuantizationConfig.from_dict(raw)
        except Exception as e:  # transformers raises ValueError/TypeError for unknown methods and bad values
            raise UsageError(f"--quantization {self.label}: transformers cannot read it ({e})") from e


def _is_bnb(data: dict[str, Any]) -> bool:
    return bool(data.get("load_in_4bit") or data.get("load_in_8bit"))


def config_quantization(config) -> dict[str, Any] | None:
    """The ``quantization_config`` a model's own config carries (a pre-quantized checkpoint),
    looked up where ``from_pretrained`` looks: the config, then its text config."""
    if config is None:
        return None
    found = getattr(config, "quantization_config", None)
    if found is None and hasattr(config, "get_text_config"):
        found = getattr(config.get_text_config(decoder=True), "quantization_config", None)
    if found is None:
        return None
    return found if isinstance(found, dict) else found.to_dict()
