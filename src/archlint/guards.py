"""What a config.json may hold before transformers sees it: JSON depth, value types, sizes.

Three checks, each a :class:`~archlint.errors.TargetError` naming the key:

* :func:`parse_json` -- JSON text nested deeper than :data:`MAX_JSON_DEPTH` is refused
  before parsing (Python's parser would recurse out of its stack).
* :func:`check_types` -- ``model_type``, ``architectures``, ``auto_map``, every
  ``*_config`` sub-config and the size keys must have the JSON type transformers expects
  (kind ``bad-config``: the key, the value's type, what was expected).
* :func:`check_sizes` -- sizes far beyond any published model are refused before anything
  is built (kind ``too-large``). Building on the meta device costs no memory per parameter,
  but it costs time and memory per *module*: ``num_hidden_layers: 10**12`` would create
  modules until the machine runs out of memory.

The limits are about 30-100 times the largest published value (the configs in
fixtures/configs and their published neighbours), so no real model comes near them:

=====================  ===========  ========================================================
what                   limit        largest published
=====================  ===========  ========================================================
layers                 4,096        126 (Llama-3.1-405B); 100 in fixtures (Llama-3.2-90B-Vision)
experts                16,384       384 (Kimi-K2, fixtures); 256 (DeepSeek-V3)
attention heads        8,192        232 (Falcon-180B, fixtures); 128 (DeepSeek-V3)
hidden size            1,048,576    16,384 (Llama-3.1-405B); 14,848 (Falcon-180B)
intermediate size      4,194,304    53,248 (Llama-3.1-405B); 49,152 (Qwen-72B)
vocabulary             16,777,216   262,144 (Gemma 3/4)
hidden size x layers   134,217,728  2,064,384 (Llama-3.1-405B: 16,384 x 126)
layers x experts       1,048,576    23,424 (Kimi-K2: 61 x 384)
=====================  ===========  ========================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .errors import TargetError

#: Deepest nesting of objects and arrays a config.json may have (real ones reach 4).
MAX_JSON_DEPTH = 64

# -- size limits ------------------------------------------------------------------------

LIMITS: dict[str, int] = {
    "layers": 4_096,
    "experts": 16_384,
    "heads": 8_192,
    "hidden": 1 << 20,
    "intermediate": 1 << 22,
    "vocab": 1 << 24,
}
MAX_HIDDEN_X_LAYERS = 1 << 27
MAX_LAYERS_X_EXPERTS = 1 << 20

#: Size keys by what they count; the names transformers' configs use.
SIZE_KEYS: dict[str, tuple[str, ...]] = {
    "layers": (
        "num_hidden_layers", "num_layers", "n_layer", "n_layers", "num_decoder_layers", "num_encoder_layers",
        "encoder_layers", "decoder_layers", "num_global_layers",
    ),
    "experts": ("num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts", "n_shared_experts"),
    "heads": (
        "num_attention_heads", "num_key_value_heads", "n_head", "num_heads", "num_kv_heads", "attention_heads",
        "encoder_attention_heads", "decoder_attention_heads", "n_head_kv", "multi_query_group_num",
    ),
    "hidden": ("hidden_size", "d_model", "n_embd", "head_dim", "d_kv", "kv_lora_rank", "q_lora_rank"),
    "intermediate": (
        "intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size", "ffn_dim", "d_ff",
        "n_inner", "ffn_hidden_size", "encoder_ffn_dim", "decoder_ffn_dim",
    ),
    "vocab": ("vocab_size", "padded_vocab_size"),
}
_WHAT = {key: what for what, keys in SIZE_KEYS.items() for key in keys}

#: Keys that, when present and not null, must hold a number (int or float, not a bool).
FLOAT_KEYS = ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "rope_theta", "initializer_range")

_SUB_CONFIG = re.compile(r"^\w+_config$")
#: ``*_config`` keys that are not sub-configs of the model.
_NOT_SUB_CONFIGS = {"quantization_config", "generation_config", "rope_config"}


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` behind a depth limit (kind ``malformed-config`` when it is exceeded)."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise TargetError(
            "malformed-config",
            f"{where} nests objects and arrays {depth} deep; archlint reads at most {MAX_JSON_DEPTH} levels",
        )
    return json.loads(text)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep the brackets of ``text`` nest, strings skipped (malformed text: a best guess)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m[0] in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


# -- types --------------------------------------------------------------------------------


def check_config(raw: Mapping[str, Any], target: str) -> None:
    """Types, then sizes, of a config.json's top level and of its sub-configs."""
    for key, value in _configs(raw, ""):
        check_types(value, target, key)
    check_sizes(raw, target)


def _configs(raw: Mapping[str, Any], prefix: str):
    """``(dotted prefix, dict)`` for the config and each nested ``*_config`` dict."""
    yield prefix, raw
    for key, value in raw.items():
        if isinstance(value, dict) and _is_sub_config(key):
            yield from _configs(value, f"{prefix}{key}.")


def _is_sub_config(key: str) -> bool:
    return bool(_SUB_CONFIG.match(key)) and key not in _NOT_SUB_CONFIGS


def check_types(raw: Mapping[str, Any], target: str, prefix: str = "") -> None:
    """Refuse a value whose JSON type transformers would choke on (kind ``bad-config``)."""

    def fail(key: str, value: Any, expected: str) -> None:
        raise TargetError(
            "bad-config",
            f"{target}: config key `{prefix}{key}` is {_describe(value)}; expected {expected}",
        )

    if "model_type" in raw and not isinstance(raw["model_type"], (str, type(None))):
        fail("model_type", raw["model_type"], "a string such as \"llama\"")
    architectures = raw.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(a, str) for a in architectures)
    ):
        fail("architectures", architectures, "a list of class names (strings)")
    if "auto_map" in raw:  # null too: transformers iterates it
        auto_map = raw["auto_map"]
        if not isinstance(auto_map, dict):
            fail("auto_map", auto_map, "an object mapping Auto classes to \"module.Class\" references (or no key)")
        for name, reference in auto_map.items():
            ok = isinstance(reference, str) or (
                isinstance(reference, list) and all(isinstance(r, (str, type(None))) for r in reference)
            )
            if not ok:
                fail(f"auto_map.{name}", reference, "a \"module.Class\" reference (string)")
    for key, value in raw.items():
        if value is None:
            continue
        if _is_sub_config(key) and not isinstance(value, dict):
            fail(key, value, "an object (a nested config) or null")
        if key in _WHAT and not _is_count(value):
            fail(key, value, "a non-negative integer")
        if key in FLOAT_KEYS and not _is_number(value):
            fail(key, value, "a finite number")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
    shown = json.dumps(value) if not isinstance(value, (dict, list)) else ""
    if isinstance(value, float) and not math.isfinite(value):
        shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})" if shown else kind


# -- sizes --------------------------------------------------------------------------------


def check_sizes(raw: Mapping[str, Any], target: str) -> None:
    """Refuse sizes far beyond any published model (kind ``too-large``), per config and sub-config."""
    for prefix, config in _configs(raw, ""):
        counts: dict[str, tuple[str, int]] = {}  # what -> (key, largest value)
        for key, value in config.items():
            what = _WHAT.get(key)
            if what is None or not _is_count(value):
                continue
            if value > LIMITS[what]:
                raise TargetError(
                    "too-large",
                    f"{target}: config key `{prefix}{key}` is {value:,}; archlint refuses more than "
                    f"{LIMITS[what]:,} {what} (the largest published models have ~100x fewer)",
                )
            if value >= counts.get(what, ("", -1))[1]:
                counts[what] = (key, value)
        _check_product(counts, "hidden", "layers", MAX_HIDDEN_X_LAYERS, prefix, target)
        _check_product(counts, "layers", "experts", MAX_LAYERS_X_EXPERTS, prefix, target)


def _check_product(counts, a: str, b: str, limit: int, prefix: str, target: str) -> None:
    if a not in counts or b not in counts:
        return
    (key_a, value_a), (key_b, value_b) = counts[a], counts[b]
    if value_a * value_b > limit:
        raise TargetError(
            "too-large",
            f"{target}: `{prefix}{key_a}` x `{prefix}{key_b}` is {value_a * value_b:,}; archlint refuses "
            f"more than {limit:,} ({a} x {b})",
        )
