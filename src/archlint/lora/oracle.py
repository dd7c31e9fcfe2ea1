"""PEFT as the oracle: run the installed PEFT's ``get_peft_model`` on a copy of the meta model.

Injecting LoRA on a meta model allocates nothing (``low_cpu_mem_usage=True`` keeps the
adapter weights on meta too) and takes well under a second, so archlint asks PEFT itself
rather than predicting it: the verdict, the exception PEFT raises, the modules and
parameters it wraps and ``get_nb_trainable_parameters()`` are PEFT's own answers.
:mod:`.reimplementation` answers the same questions when PEFT is missing.
"""

from __future__ import annotations

import copy
import copyreg
import gc
import re
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from torch import nn

from ..report import Engine
from ..train_forward import _raising_module
from .plan import Plan
from .unused_bitsandbytes import unused_bitsandbytes_hidden


@dataclass(frozen=True)
class Outcome:
    """What ``get_peft_model`` does with a plan on one model."""

    ok: bool
    error_type: str | None = None
    error_message: str | None = None
    error_module: str | None = None  # the module PEFT was wrapping when it raised, if one
    modules: tuple[str, ...] = ()  # wrapped module paths, in module order
    parameters: tuple[str, ...] = ()  # wrapped parameter paths (target_parameters)
    trainable: int = 0  # get_nb_trainable_parameters()[0]
    # PEFT's transformers-v5 MoE conversion: target_modules entry -> the expert parameter it became
    rerouted: dict[str, str] = field(default_factory=dict)
    engine: Engine = Engine.PEFT
    # A suggested fix's training step (lora.training_step): the stages that ran clean, and
    # what failed ("forward: AttributeError: … in model.layers.0.mlp.router"), if anything.
    checked: tuple[str, ...] = ()
    step_error: str | None = None

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
    """A copy PEFT may mutate; parameters stay on meta, weight ties stay tied.

    The result is what ``copy.deepcopy(model)`` returns, built without deepcopy's generic
    ``__reduce_ex__``/``_reconstruct`` round trip for every module and every (mostly empty)
    hook dict, which cost most of a PEFT run's copy: each module is rebuilt the way deepcopy
    rebuilds it (``cls.__new__``, its ``__getstate__`` deep-copied, ``__setstate__``), with
    its own ``_modules``/``_parameters``/``_buffers``/hook dicts; parameters and buffers go
    through their own ``__deepcopy__`` (a new meta tensor, ``requires_grad`` kept); one memo
    keyed by ``id`` keeps tied weights and shared modules shared, and copies each config
    once (PEFT sets ``config.pretraining_tp``). Anything else (a module class with its own
    copy protocol, a config, a tensor, any other object) is handed to ``copy.deepcopy`` with
    the same memo, so nothing is copied differently from deepcopy."""
    return _Cloner().copy(model)


#: Types deepcopy returns as they are (its ``_deepcopy_atomic`` table).
_ATOMIC = frozenset(
    t for t, f in getattr(copy, "_deepcopy_dispatch", {}).items() if f is getattr(copy, "_deepcopy_atomic", None)
) | {type(None), int, float, bool, complex, bytes, str, type, types.FunctionType, types.BuiltinFunctionType}
_PLAIN_MODULE_CLASSES: dict[type, bool] = {}


def _plain_module_class(cls: type) -> bool:
    """Whether deepcopy copies instances of ``cls`` through ``object.__reduce_ex__`` (so that
    rebuilding it by hand is the same thing): no copy hook of its own, not a list/dict."""
    plain = _PLAIN_MODULE_CLASSES.get(cls)
    if plain is None:
        plain = (getattr(cls, "__deepcopy__", None) is None and cls not in copyreg.dispatch_table
                 and cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__
                 and not hasattr(cls, "__getnewargs_ex__") and not hasattr(cls, "__getnewargs__")
                 and not issubclass(cls, (list, dict)))
        _PLAIN_MODULE_CLASSES[cls] = plain
    return plain


class _Cloner:
    """One deep copy: ``copy.deepcopy`` with fast paths for modules and plain containers."""

    _MISSING = object()

    def __init__(self) -> None:
        self.memo: dict[int, object] = {}
        self.keep: list[object] = []  # originals stay alive while their ids are memo keys (as in deepcopy)
        self.memo[id(self.memo)] = self.keep

    def copy(self, x):
        cls = type(x)
        if cls in _ATOMIC:
            return x
        y = self.memo.get(id(x), self._MISSING)
        if y is not self._MISSING:
            return y
        if cls is dict or (cls is OrderedDict and not vars(x)):
            y = cls()
            self._remember(x, y)
            for k, v in x.items():
                y[self.copy(k)] = self.copy(v)
            return y
        if cls is list:
            y = []
            self._remember(x, y)
            y.extend(self.copy(a) for a in x)
            return y
        if cls is set and all(type(a) in _ATOMIC for a in x):
            y = set(x)
            self._remember(x, y)
            return y
        if cls is types.MethodType:  # a hook bound to a module: bound to the copy
            y = cls(x.__func__, self.copy(x.__self__))
            self._remember(x, y)
            return y
        if isinstance(x, nn.Module) and "__deepcopy__" not in x.__dict__ and _plain_module_class(cls):
            state = x.__getstate__()
            if type(state) is dict:
                y = cls.__new__(cls)
                self._remember(x, y)
                y.__setstate__(self.copy(state))
                return y
        return copy.deepcopy(x, self.memo)

    def _remember(self, x, y) -> None:
        self.memo[id(x)] = y
        self.keep.append(x)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while PEFT runs on a copy.

    A PEFT run allocates tens of thousands of small objects, which triggers collections that
    each walk the few hundred thousand objects torch and transformers keep alive (a third of
    a run's time). Nothing a PEFT run computes depends on when garbage is collected; the
    collector is switched back on (if it was on) right after, and collects as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_peft(model: nn.Module, plan: Plan, *, fresh: Callable[[nn.Module], nn.Module] = fresh_copy,
             keep: list | None = None) -> Outcome:
    """``get_peft_model(fresh(model), LoraConfig(**plan))`` and what came out of it; the
    adapted model is appended to ``keep`` (when given and PEFT injected the plan)."""
    with unused_bitsandbytes_hidden():
        return _run_peft(model, plan, fresh, keep)


def _run_peft(model: nn.Module, plan: Plan, fresh: Callable[[nn.Module], nn.Module], keep: list | None) -> Outcome:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(**plan.lora_kwargs())
    rerouted = moe_reroutes(model, plan)
    with _gc_paused():
        target = fresh(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                peft_model = get_peft_model(target, config, low_cpu_mem_usage=True)
            except Exception as e:  # PEFT's verdict: the exception is the answer, not a failure of archlint
                return Outcome(False, type(e).__name__, str(e), rerouted=rerouted,
                               error_module=refused_module(e, target) or None)
        tuner = peft_model.base_model
        trainable, _ = peft_model.get_nb_trainable_parameters()
        if keep is not None:
            keep.append(peft_model)
    return Outcome(
        True,
        modules=tuple(tuner.targeted_module_names),
        parameters=tuple(tuner.targeted_parameter_names),
        trainable=int(trainable),
        rerouted=rerouted,
    )


def refused_module(error: BaseException, model: nn.Module) -> str:
    """The path in ``model`` of the module PEFT was wrapping when it raised (its ``target``:
    a container that is not a layer type, "Target module … is not supported"); "" when none."""
    return _raising_module(error, {id(m): p for p, m in model.named_modules()}, local="target")


def moe_reroutes(model: nn.Module, plan: Plan) -> dict[str, str]:
    """Which ``target_modules`` names PEFT's transformers-v5 MoE conversion turns into
    expert parameters for this model (``_convert_peft_config_moe``), by PEFT's own code."""
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import (
            convert_peft_config_for_transformers,
            get_model_conversion_mapping,
        )
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


def peft_entry_matcher(model: nn.Module, plan: Plan) -> tuple[Callable[[str], bool], list[str]]:
    """PEFT's own ``check_target_module_exists`` for a one-entry plan (after its
    ``all-linear`` resolution), and the expert parameters PEFT's MoE conversion added
    for it (a regex or ``all-linear`` naming gate/up/down)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers, check_target_module_exists

    config = LoraConfig(**plan.lora_kwargs())
    added = []
    if isinstance(config.target_modules, str):
        try:
            from peft.utils.transformers_weight_conversion import (
                convert_peft_config_for_transformers,
                get_model_conversion_mapping,
            )

            if hasattr(getattr(model, "config", None), "model_type"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    conversions = get_model_conversion_mapping(model)
                    convert_peft_config_for_transformers(config, model=model, conversions=conversions)
                added = sorted(set(config.target_parameters or ()))
        except (ImportError, ValueError):
            pass
    config = _maybe_include_all_linear_layers(config, model)
    return (lambda key: bool(check_target_module_exists(config, key))), added
