"""PEFT as the oracle: run the installed PEFT's ``get_peft_model`` on a copy of the meta model.

Injecting LoRA on a meta model allocates nothing (``low_cpu_mem_usage=True`` keeps the
adapter weights on meta too) and takes well under a second, so archlint asks PEFT itself
rather than predicting it: the verdict, the exception PEFT raises, the modules and
parameters it wraps and ``get_nb_trainable_parameters()`` are PEFT's own answers.
:mod:`archlint.plan.reimplementation` answers the same questions when PEFT is missing.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from torch import nn

from .model import Plan


@dataclass(frozen=True)
class Outcome:
    """What ``get_peft_model`` does with a plan on one model."""

    ok: bool
    error_type: str | None = None
    error_message: str | None = None
    modules: tuple[str, ...] = ()  # wrapped module paths, in module order
    parameters: tuple[str, ...] = ()  # wrapped parameter paths (target_parameters)
    trainable: int = 0  # get_nb_trainable_parameters()[0]
    # PEFT's transformers-v5 MoE conversion: target_modules entry -> the expert parameter it became
    rerouted: dict[str, str] = field(default_factory=dict)
    engine: str = "peft"  # "peft" or "reimplementation"

    @property
    def error(self) -> dict[str, str] | None:
        """For reports: PEFT's message with its set literals sorted, so that a report is the
        same across runs (a set of strings prints in a hash-seed-dependent order)."""
        return {"type": self.error_type, "message": stable_message(self.error_message or "")} if not self.ok else None


_SET_LITERAL = re.compile(r"\{('[^'{}]*'(?:, '[^'{}]*')*)\}")


def stable_message(message: str) -> str:
    """``{'v_proj', 'q_proj'}`` -> ``{'q_proj', 'v_proj'}`` inside an exception message."""
    return _SET_LITERAL.sub(lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


def peft_version() -> str | None:
    try:
        return version("peft")
    except PackageNotFoundError:
        return None


def peft_available() -> bool:
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def fresh_copy(model: nn.Module) -> nn.Module:
    """A copy PEFT may mutate; parameters stay on meta, weight ties stay tied."""
    return copy.deepcopy(model)


def run_peft(model: nn.Module, plan: Plan, *, fresh: Callable[[nn.Module], nn.Module] = fresh_copy) -> Outcome:
    """``get_peft_model(fresh(model), LoraConfig(**plan))`` and what came out of it."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(**plan.lora_kwargs())
    rerouted = moe_reroutes(model, plan)
    target = fresh(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            peft_model = get_peft_model(target, config, low_cpu_mem_usage=True)
        except Exception as e:  # PEFT's verdict: the exception is the answer, not a failure of archlint
            return Outcome(False, type(e).__name__, str(e), rerouted=rerouted)
    tuner = peft_model.base_model
    trainable, _ = peft_model.get_nb_trainable_parameters()
    return Outcome(
        True,
        modules=tuple(tuner.targeted_module_names),
        parameters=tuple(tuner.targeted_parameter_names),
        trainable=int(trainable),
        rerouted=rerouted,
    )


def moe_reroutes(model: nn.Module, plan: Plan) -> dict[str, str]:
    """Which ``target_modules`` names PEFT's transformers-v5 MoE conversion turns into
    expert parameters for this model (``_convert_peft_config_moe``), by PEFT's own code."""
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import convert_peft_config_for_transformers, get_model_conversion_mapping
    except ImportError:
        return {}
    if not hasattr(getattr(model, "config", None), "model_type"):
        return {}
    config = LoraConfig(**plan.lora_kwargs())
    before = set(config.target_modules) if isinstance(config.target_modules, (set, list)) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert_peft_config_for_transformers(config, model=model, conversions=get_model_conversion_mapping(model))
    except Exception:  # the same error surfaces, with PEFT's message, in run_peft
        return {}
    after_modules = set(config.target_modules or ()) if not isinstance(config.target_modules, str) else None
    if after_modules is None:
        return {}
    if before is None:  # a regex or all-linear that the conversion resolved to names first
        before = after_modules | _resolved_names(plan, model)
    table = conversion_table(model)
    gone = sorted(before - after_modules)
    return {name: table[leaf] for name in gone if (leaf := name.rsplit(".", 1)[-1]) in table}


def conversion_table(model: nn.Module) -> dict[str, str]:
    """PEFT's v4-name -> v5-parameter table for this model's type, or {} when PEFT does not convert it."""
    try:
        from peft.utils.transformers_weight_conversion import _MODEL_TO_CONVERSION_PATTERN, _MOE_TARGET_MODULE_MAPPING
    except ImportError:
        return {}
    base = _MODEL_TO_CONVERSION_PATTERN.get(getattr(getattr(model, "config", None), "model_type", None))
    return dict(_MOE_TARGET_MODULE_MAPPING.get(base) or {}) if base else {}


def _resolved_names(plan: Plan, model: nn.Module) -> set[str]:
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import _resolve_string_target_modules
    except ImportError:
        return set()
    config = LoraConfig(**plan.lora_kwargs())
    try:
        return set(_resolve_string_target_modules(config, model, conversion_table(model)) or ())
    except Exception:
        return set()
