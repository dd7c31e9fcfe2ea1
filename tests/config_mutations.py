"""Hypothesis strategies: the bundled real configs, mutated the way a fuzzer (or a bad edit) would.

A drawn example is the JSON *text* of a config.json: one of fixtures/configs/*/config.json
with one to four mutations --

* ``swap``     a key (top level or in a sub-config) gets a value of another JSON type;
* ``number``   a numeric key gets an extreme, negative, zero, fractional, NaN or infinite value;
* ``delete``   a key disappears;
* ``nest``     a value is wrapped in 1 to 10,000 levels of arrays or objects;
* ``unicode``  a string value, or a new key, becomes arbitrary Unicode (surrogates included);
* ``retype``   model_type becomes another transformers type, an unknown word or a near miss.

``depth`` cuts every ``num_hidden_layers`` of the base to that many layers before mutating
(a build of 2 layers takes ~0.1 s instead of ~0.4 s); mutations can still set any depth.
Used by tests/test_fuzz_configs.py and benchmarks/fuzz_configs.py.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
BASES = sorted((REPO / "fixtures" / "configs").glob("*/config.json"))

EXTREME_NUMBERS = [
    0, 1, -1, -4096, 2, 3, 7, 2**31 - 1, 2**31, 2**32 + 1, 2**63, 10**12, 10**30, 10**300,
    0.5, -0.5, 1e-30, 1e308, -1e308, math.nan, math.inf, -math.inf, 4096.0, 1e6,
]
NEST_DEPTHS = [1, 2, 5, 50, 65, 1000, 10_000]
_DEEP = "__archlint_fuzz_deep_{}__"


@cache
def base_configs(depth: int | None = 2) -> tuple[tuple[str, str], ...]:
    """``(name, JSON text)`` of every bundled real config, layers cut to ``depth``."""
    out = []
    for path in BASES:
        config = json.loads(path.read_text())
        if depth is not None:
            for holder in _dicts(config):
                if isinstance(holder.get("num_hidden_layers"), int):
                    holder["num_hidden_layers"] = min(holder["num_hidden_layers"], depth)
        out.append((path.parent.name, json.dumps(config)))
    return tuple(out)


def _dicts(value: Any):
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _dicts(v)


def _paths(config: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of nested objects: ("text_config", "num_hidden_layers")."""
    out = []
    for key, value in config.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(_paths(value, (*prefix, key)))
    return out


def _holder(config: dict, path: tuple) -> dict:
    for key in path[:-1]:
        config = config[key]
    return config


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(EXTREME_NUMBERS)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated_configs(draw, depth: int | None = 2) -> str:
    """The JSON text of a mutated real config (see the module docstring)."""
    name, text = draw(st.sampled_from(base_configs(depth)))
    config = json.loads(text)
    deep: dict[str, tuple[int, str, Any]] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(config)
        if not paths:
            break
        how = draw(st.sampled_from(["swap", "number", "number", "delete", "nest", "unicode", "retype"]))
        if how == "retype":
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

            config["model_type"] = draw(
                st.sampled_from(sorted(CONFIG_MAPPING_NAMES)) | st.text(max_size=10)
                | st.sampled_from(["llama ", "LLAMA", "lama"])
            )
            continue
        if how == "number":
            numeric = [p for p in paths if isinstance(_holder(config, p)[p[-1]], (int, float))]
            paths = numeric or paths
        path = draw(st.sampled_from(paths))
        holder = _holder(config, path)
        if how == "delete":
            del holder[path[-1]]
        elif how == "swap":
            holder[path[-1]] = draw(json_values)
        elif how == "number":
            holder[path[-1]] = draw(st.sampled_from(EXTREME_NUMBERS) | st.integers(min_value=-(2**40), max_value=2**40))
        elif how == "nest":
            marker = _DEEP.format(len(deep))
            deep[marker] = (draw(st.sampled_from(NEST_DEPTHS)), draw(st.sampled_from("[{")), holder[path[-1]])
            holder[path[-1]] = marker
        elif how == "unicode":
            if draw(st.booleans()):
                holder[path[-1]] = draw(st.text(min_size=1, max_size=20))
            else:
                holder[draw(st.text(min_size=1, max_size=10))] = draw(st.text(max_size=10))
    return dumps_with_nesting(config, deep)


def dumps_with_nesting(config: dict, deep: dict[str, tuple[int, str, Any]]) -> str:
    """``json.dumps`` (NaN and infinities allowed, as Python writes them), with each marker
    replaced by its value nested ``n`` deep -- spliced as text, past json.dumps' recursion."""
    text = json.dumps(config, allow_nan=True)
    for marker, (levels, bracket, value) in deep.items():
        inner = json.dumps(value, allow_nan=True)
        opening, closing = ("[" * levels, "]" * levels) if bracket == "[" else ('{"x": ' * levels, "}" * levels)
        text = text.replace(json.dumps(marker), opening + inner + closing, 1)
    return text
