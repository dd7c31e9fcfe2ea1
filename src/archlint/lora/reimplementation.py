"""What PEFT 0.21.2 does with a LoRA plan, for when PEFT is not installed.

A reading of PEFT 0.21.2's ``BaseTuner.inject_adapter`` (``peft/tuners/tuners_utils.py``),
``check_target_module_exists``, ``_maybe_include_all_linear_layers``, LoRA's
``_prepare_adapter_config`` and default dispatch (``peft/tuners/lora/model.py``,
``layer.py``), the Mamba guard, ``ParamWrapper`` and the transformers-v5 MoE conversion
(``peft/utils/transformers_weight_conversion.py``) and the tied-embedding lookup
(``_get_module_names_tied_with_embedding``), written from the behaviour, not
copied. The test suite and ``benchmarks/peft_agreement.py`` hold its verdicts,
wrapped modules and trainable counts equal to the installed PEFT.

Not reproduced (PEFT raises or behaves differently there; archlint then says the
prediction comes from the reimplementation): quantized layers, ``nn.MultiheadAttention``
trainable counts, ``rank_pattern``/``alpha_pattern`` beyond the MoE conversion's own,
DoRA/other LoRA variants, ``trainable_token_indices``, ``layer_replication`` and
``ensure_weight_tying``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..report import Engine
from .oracle import Outcome
from .plan import ALL_LINEAR, Plan
from .targets import parameter_reached, reaches

#: The PEFT release whose behaviour this module reproduces.
REIMPLEMENTED_VERSION = "0.21.2"

#: LoRA's default dispatch (``dispatch_default``): the layer types it wraps.
_MAMBA_TYPES = {"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"}
_MAMBA_INCOMPATIBLE = {"out_proj", "conv1d"}

#: PEFT 0.21.2's MoE conversion: model types -> base pattern, and its v4-name -> v5-parameter
#: tables. Only the MoE patterns matter here (the others carry no target-module mapping).
_QWEN2_MOE_TYPES = (
    "afmoe deepseek_v2 deepseek_v3 deepseek_v32 dots1 ernie4_5_moe glm4_moe glm4_moe_lite glm_moe_dsa glm4v_moe "
    "longcat_flash solar_open mellum qwen3_moe beam qwen3_omni_moe qwen3_omni_moe_thinker qwen3_omni_moe_text "
    "qwen3_next hunyuan_v1_moe flex_olmo olmoe sarvam_mla exaone_moe cohere2_moe"
).split()
_CONVERSION = {**{t: "qwen2_moe" for t in _QWEN2_MOE_TYPES},
               "mixtral": "mixtral", "minimax": "mixtral", "minimax_m2": "mixtral"}
_MOE_MAPPING = {
    "mixtral": {"gate": "gate.weight", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
    "qwen2_moe": {"gate": "gate.weight", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj",
                  "down_proj": "down_proj"},
}
_FUSED = {"mixtral": {"gate_up_proj": ("w1", "w3")}, "qwen2_moe": {"gate_up_proj": ("gate_proj", "up_proj")}}


class NoMatchingPeftModuleError(ValueError):
    """Stands for PEFT's exception of the same name (reported by its name)."""


@dataclass
class _Config:
    target_modules: Any
    exclude_modules: Any
    target_parameters: set[str]
    layers_to_transform: Any
    layers_pattern: Any
    modules_to_save: list[str]
    r: int
    rank_pattern: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: Plan) -> _Config:
        def converted(kind, value):  # a tuple (a list in the plan) as PEFT's config holds it; else as it is
            return kind(value) if isinstance(value, tuple) else value

        return cls(
            target_modules=converted(set, plan.target_modules),
            exclude_modules=converted(set, plan.exclude_modules),
            target_parameters=set(plan.target_parameters),
            layers_to_transform=converted(list, plan.layers_to_transform),
            layers_pattern=converted(list, plan.layers_pattern),
            modules_to_save=list(plan.modules_to_save),
            r=plan.r,
        )


def run(model: nn.Module, plan: Plan, *, default_targets: tuple[str, ...] | None = None) -> Outcome:
    """The reimplemented ``get_peft_model``: verdict, wrapped modules/parameters, trainable count."""
    config = _Config.of(plan)
    try:
        rerouted = convert_moe(config, model)
        return _inject(model, config, rerouted, default_targets)
    except (ValueError, NotImplementedError) as e:
        return Outcome(False, type(e).__name__, str(e), engine=Engine.REIMPLEMENTATION)


def matches(config: _Config, key: str) -> bool | None:
    """``check_target_module_exists``: True, False, or None for an excluded module."""
    return reaches(key, config.target_modules, exclude=config.exclude_modules,
                   layers_to_transform=config.layers_to_transform, layers_pattern=config.layers_pattern,
                   modules_to_save=config.modules_to_save)


def entry_matcher(model: nn.Module, plan: Plan) -> tuple[Callable[[str], bool], list[str]]:
    """:func:`.oracle.peft_entry_matcher` without PEFT: the matcher of a one-entry plan and
    the expert parameters the MoE conversion added for it."""
    config = _Config.of(plan)
    added = []
    if isinstance(config.target_modules, str):
        before = set(config.target_parameters)
        try:
            convert_moe(config, model)
        except ValueError:
            pass
        added = sorted(set(config.target_parameters) - before)
    if isinstance(config.target_modules, str) and config.target_modules.lower() == ALL_LINEAR:
        config.target_modules = all_linear_names(model)
    return (lambda key: bool(matches(config, key))), added


def all_linear_names(model: nn.Module) -> set[str]:
    """``all-linear``: every ``nn.Linear``/``Conv1D`` path but the output embedding."""
    from transformers import PreTrainedModel
    from transformers.pytorch_utils import Conv1D

    names = {n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
    if isinstance(model, PreTrainedModel):
        head = model.get_output_embeddings()
        if head is not None:
            names.discard(next(n for n, m in model.named_modules() if m is head))
    return names


def convert_moe(config: _Config, model: nn.Module) -> dict[str, str]:
    """PEFT's transformers-v5 MoE conversion, in place; returns entry -> expert parameter."""
    base = _CONVERSION.get(getattr(getattr(model, "config", None), "model_type", None))
    if base is None:
        return {}
    mapping, fused = _MOE_MAPPING[base], _FUSED[base]
    if isinstance(config.target_modules, str):
        resolved = _resolve_string(config, model, mapping)
        if not resolved:
            return {}
        config.target_modules = resolved
    targets = set(config.target_modules or ())
    remaining, rerouted, present = set(), {}, {new: set() for new in fused}
    for target in targets:
        hit = next(((old, new) for old, new in mapping.items() if target == old or target.endswith("." + old)), None)
        if hit is None:
            remaining.add(target)
            continue
        rerouted[target] = hit[1]
        config.target_parameters.add(hit[1])
        if hit[1] in fused:
            present[hit[1]].add(hit[0])
    for new, required in fused.items():
        have = present[new]
        if 0 < len(have) < len(required):
            missing = ", ".join(sorted(set(required) - have))
            raise ValueError(f"Cannot convert PEFT target(s) {', '.join(sorted(have))} "
                             f"without also targeting {missing} "
                             f"because they are fused into {new}.")
        if len(have) == len(required) > 1:
            config.rank_pattern[rf".*\.{re.escape(new)}"] = config.r * len(required)
    config.target_modules = remaining
    return rerouted


def _resolve_string(config: _Config, model: nn.Module, mapping: dict[str, str]) -> set[str]:
    if config.target_modules.lower() == ALL_LINEAR:
        names = {n.rpartition(".")[2] for n in all_linear_names(model)}
        return names | set(mapping)
    module_keys = [n for n, _ in model.named_modules() if n]
    param_keys = [n for n, _ in model.named_parameters()]
    matched = {k.rpartition(".")[2] for k in module_keys + param_keys if matches(config, k)}
    containers: dict[str, set[str]] = {}
    for name in param_keys:
        container, _, leaf = name.rpartition(".")
        containers.setdefault(leaf, set()).add(container)
    for old, new in mapping.items():
        if old not in matched and any(matches(config, f"{c}.{old}") for c in containers.get(new, ())):
            matched.add(old)
    return matched


def _check_tied_embeddings(model: nn.Module) -> None:
    """PEFT looks up the modules tied to the input embedding before matching anything
    (``_check_tied_modules``); a model with a ``_tied_weights_keys`` mapping whose
    ``get_input_embeddings`` is not implemented makes every plan raise there."""
    config = getattr(model, "config", None)
    if getattr(config, "tie_word_embeddings", None) is False:
        return
    if isinstance(getattr(model, "_tied_weights_keys", None), dict) and hasattr(model, "get_input_embeddings"):
        model.get_input_embeddings()  # raises NotImplementedError on such models, as in PEFT


def _inject(model: nn.Module, config: _Config, rerouted: dict[str, str], default_targets) -> Outcome:
    _check_tied_embeddings(model)
    if config.target_modules is None:
        if default_targets is not None:
            config.target_modules = default_targets if isinstance(default_targets, str) else set(default_targets)
        elif not config.target_parameters:
            raise ValueError("Please specify `target_modules` or `target_parameters`in `peft_config`")
    if isinstance(config.target_modules, str) and config.target_modules.lower() == ALL_LINEAR:
        config.target_modules = all_linear_names(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    modules, excluded, unmatched, trainable = [], [], [], 0
    for key, module in model.named_modules():
        if not key:
            continue
        hit = matches(config, key)
        if hit is None:
            excluded.append(key)
        elif not hit:
            unmatched.append(key)
        else:
            leaf = key.rpartition(".")[2]
            if model_type in _MAMBA_TYPES and leaf in _MAMBA_INCOMPATIBLE:
                raise ValueError(
                    f"[PEFT:PeftType.LORA] Module '{leaf}' is incompatible with Mamba-based models "
                    f"(model_type='{model_type}'). "
                    f"Incompatible modules: {_MAMBA_INCOMPATIBLE}. Please remove it from `target_modules` to avoid "
                    "compatibility issues.")
            trainable += _module_lora_size(module, config.r)
            modules.append(key)
    parameters = []
    if config.target_parameters:
        for key, size in _parameter_targets(model, config):
            parameters.append(key)
            trainable += size
    if not modules and not parameters:
        _raise_no_match(config, excluded, unmatched)
    trainable += _modules_to_save_size(model, config)
    # int(): a model may hold its sizes as 0-d tensors (a width its config computed with torch)
    return Outcome(True, modules=tuple(modules), parameters=tuple(parameters), trainable=int(trainable),
                   rerouted=rerouted, engine=Engine.REIMPLEMENTATION)


def _module_lora_size(module: nn.Module, r: int) -> int:
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, nn.Embedding):
        return r * (module.num_embeddings + module.embedding_dim)
    if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, nn.modules.conv._ConvTransposeNd):
        if type(module) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
            raise ValueError(_unsupported(module))
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        return r * module.in_channels // module.groups * kernel + module.out_channels * r
    if isinstance(module, nn.Linear):
        return r * (module.in_features + module.out_features)
    if isinstance(module, Conv1D):
        rows, cols = module.weight.shape
        return r * (rows + cols)
    if isinstance(module, nn.MultiheadAttention):
        return 0  # not reproduced (see the module docstring)
    raise ValueError(_unsupported(module))


def _unsupported(module: nn.Module) -> str:
    return (f"Target module {module} is not supported. Currently, only the following modules are supported: "
            "`torch.nn.Linear`, `torch.nn.Embedding`, `torch.nn.Conv1d`, `torch.nn.Conv2d`, `torch.nn.Conv3d`, "
            "`transformers.pytorch_utils.Conv1D`, `torch.nn.MultiheadAttention.`.")


def _parameter_targets(model: nn.Module, config: _Config):
    names = sorted(config.target_parameters)
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            key = f"{module_name}.{param_name}"
            if parameter_reached(key, names):
                r = next((v for p, v in config.rank_pattern.items() if re.match(rf"(.*\.)?({p})$", key)), config.r)
                if param.ndim == 3:
                    experts, size = param.shape[0], param.shape[1] + param.shape[2]
                else:
                    experts, size = 1, param.shape[0] + param.shape[1]
                yield key, r * experts * size


def _modules_to_save_size(model: nn.Module, config: _Config) -> int:
    if not config.modules_to_save:
        return 0
    total = 0
    for key, module in model.named_modules():
        if key and any(key == m or key.endswith("." + m) for m in config.modules_to_save):
            total += sum(p.numel() for p in module.parameters())
    return total


def _raise_no_match(config: _Config, excluded: list[str], unmatched: list[str]):
    if excluded and not unmatched:
        raise NoMatchingPeftModuleError(
            "All modules were excluded. This is likely unintended. "
            "Check your `target_modules`, `exclude_modules` and `modules_to_save` configuration.")
    if not excluded and unmatched and not config.target_modules:
        raise NoMatchingPeftModuleError(
            "No `target_modules` passed but also no `target_parameters` found. "
            "Please check the values for these arguments.")
    suffix = ""
    if config.layers_to_transform is not None:
        suffix += f" Note: You specified 'layers_to_transform': {config.layers_to_transform}."
    if config.layers_pattern is not None:
        suffix += f" You also specified 'layers_pattern': {config.layers_pattern}."
    if not excluded and unmatched:
        raise NoMatchingPeftModuleError(
            f"Target modules {config.target_modules} not found in the base model. "
            f"Please check the target modules and try again.{suffix}")
    raise NoMatchingPeftModuleError(
        "No modules were targeted for adaptation. This might be caused by a combination of mismatched target modules "
        "and excluded modules. Please check your `target_modules` and `exclude_modules` configuration. You may also "
        f"have only targeted modules that are marked to be saved (`modules_to_save`).{suffix}")
