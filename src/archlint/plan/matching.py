"""Per-entry matching: which modules and parameters one ``target_modules`` entry reaches.

``get_peft_model`` only reports the union of all entries (and raises on the first
module it cannot wrap); a user asks per entry. Each entry is matched alone, with the
plan's ``exclude_modules``/``layers_to_transform``/``modules_to_save``, by PEFT's own
``check_target_module_exists`` and ``all-linear`` resolution when PEFT is installed,
else by :mod:`archlint.plan.reimplementation`. Names PEFT's MoE conversion turns into
expert parameters are reported as the parameters they reach.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable

from torch import nn

from ..findings import star_indices
from . import reimplementation as ri
from .model import ALL_LINEAR, Plan
from .oracle import peft_available


@dataclasses.dataclass(frozen=True)
class EntryMatch:
    modules: tuple[str, ...]  # module paths the entry matches (before PEFT's type dispatch)
    parameters: tuple[str, ...]  # parameter paths it reaches through the MoE conversion or target_parameters


def entry_matches(model: nn.Module, plan: Plan, entry: str, rerouted: dict[str, str],
                  memo: dict | None = None) -> EntryMatch:
    """What ``entry`` of ``plan.target_modules`` reaches on ``model``. ``memo`` (one dict per
    model) keeps each answer under the one-entry plan it was computed from, so that an entry
    several plans share with the same other keys (``q_proj`` in q,k,v,o and in the seven
    standard names) is matched once."""
    single = dataclasses.replace(plan, target_modules=entry if isinstance(plan.target_modules, str) else (entry,),
                                 target_parameters=())
    reroute = rerouted.get(entry) if not isinstance(plan.target_modules, str) else None
    key = (repr(sorted((k, repr(v)) for k, v in single.lora_kwargs().items())), reroute)
    if memo is not None and key in memo:
        return memo[key]
    if reroute is not None:
        found = EntryMatch((), parameters_matching(model, [reroute]))
    else:
        matcher, extra_params = _matcher(model, single)
        if _names_no_index(single):
            matcher = _once_per_pattern(matcher)
        modules = tuple(k for k, _ in model.named_modules() if k and matcher(k))
        found = EntryMatch(modules, parameters_matching(model, extra_params) if extra_params else ())
    if memo is not None:
        memo[key] = found
    return found


_NUMERIC_SEGMENT = re.compile(r"(^|\.)\d+(\.|$)")


def _names_no_index(plan: Plan) -> bool:
    """Plain names without a numeric segment, no regex, no ``layers_to_transform``: PEFT's
    matching then answers alike for two paths that differ only in their numeric segments
    (``layers.3.mlp.up_proj`` and ``layers.17.mlp.up_proj``)."""
    kwargs = plan.lora_kwargs()
    if kwargs.get("layers_to_transform") is not None or kwargs.get("layers_pattern") is not None:
        return False
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, str) or any(_NUMERIC_SEGMENT.search(str(n)) for n in value)):
            return False
    return True


def _once_per_pattern(matcher: Callable[[str], bool]) -> Callable[[str], bool]:
    """``matcher`` asked once per path pattern (numeric segments starred), so that a
    model's repeated layers cost one question each, whatever the depth."""
    seen: dict[str, bool] = {}

    def match(key: str) -> bool:
        pattern = star_indices(key)
        if pattern not in seen:
            seen[pattern] = matcher(key)
        return seen[pattern]

    return match


def parameters_matching(model: nn.Module, entries) -> tuple[str, ...]:
    """PEFT's ``target_parameters`` rule: the full name or a dotted suffix of it."""
    entries = list(entries)
    out = []
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            key = f"{module_name}.{name}"
            if key in entries or any(key.endswith("." + e) for e in entries):
                out.append(key)
    return tuple(out)


def _matcher(model: nn.Module, plan: Plan) -> tuple[Callable[[str], bool], list[str]]:
    """A key -> matched predicate for a one-entry plan, and the expert parameters the
    MoE conversion added for it (a regex or ``all-linear`` naming gate/up/down)."""
    if peft_available():
        return _peft_matcher(model, plan)
    config = ri._Config.of(plan)
    added = []
    if isinstance(config.target_modules, str):
        before = set(config.target_parameters)
        try:
            ri.convert_moe(config, model)
        except ValueError:
            pass
        added = sorted(set(config.target_parameters) - before)
    if isinstance(config.target_modules, str) and config.target_modules.lower() == ALL_LINEAR:
        config.target_modules = ri.all_linear_names(model)
    return (lambda key: bool(ri.matches(config, key))), added


def _peft_matcher(model: nn.Module, plan: Plan):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers, check_target_module_exists

    config = LoraConfig(**plan.lora_kwargs())
    added = []
    if isinstance(config.target_modules, str):
        try:
            from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers, get_model_conversion_mapping

            if hasattr(getattr(model, "config", None), "model_type"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    convert_peft_config_for_transformers(config, model=model, conversions=get_model_conversion_mapping(model))
                added = sorted(set(config.target_parameters or ()))
        except (ImportError, ValueError):
            pass
    config = _maybe_include_all_linear_layers(config, model)
    return (lambda key: bool(check_target_module_exists(config, key))), added
