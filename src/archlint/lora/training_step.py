"""One LoRA training step under ``FakeTensorMode``: what "the plan works" means.

``get_peft_model`` returning is not enough: on PhiMoE and Llama-4 ``all-linear`` wraps the
router, whose forward returns a tuple, and the first forward of the adapted model raises
``AttributeError: 'tuple' object has no attribute 'dtype'``. So a plan is only called
working after one training step of the adapted model ran clean:

1. **inject**: the installed PEFT's ``get_peft_model`` on a copy of the model;
2. **forward**: a training-mode forward on what a text-only collator produces
   (``input_ids``, ``attention_mask``, ``labels``), with a loss;
3. **backward**: the gradient of that loss with respect to every LoRA parameter of the
   adapted modules the forward ran; each must be reached.

Fake tensors carry shapes and dtypes but no memory, so this runs the installed PEFT and
transformers code end to end on the meta model. It runs on the copy whose repeated blocks
are cut to one layer per structure (:mod:`.shrink`, shared with TRAIN001), built once per
lint (:mod:`archlint.facts.training`). A step is remembered per set of modules it adapts, so
plans that adapt the same modules of the copy (the seven standard names and ``all-linear``
on Llama) share one step, and a plan adapting a subset of the modules of a plan whose step
ran clean is clean without a run of its own (``StepChecker._implied`` says why).
When PEFT already answered a plan on the shrunk copy, its adapted copy is stepped
instead of injecting the same plan again.
A plan that matches nothing on the copy (an entry naming a layer the copy does not keep)
is stepped on the model itself.

Adapters the text forward does not run (a vision tower's) get no gradient from text and
are not required to; when no adapted module runs at all, backward is not checked and the
step says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from ..errors import one_line
from ..train_forward import _quiet, _raising_module, collator_inputs
from .unused_bitsandbytes import unused_bitsandbytes_hidden

STAGES = ("inject", "forward", "backward")
_NO_ADAPTER_RUNS = "no adapted module runs on text input; backward not checked"
#: Sequence lengths tried in turn: short first (SigLIP's text tower has 64 positions; a recurrent
#: scan loops over positions), then long enough for compressed attention (DeepSeek-V4 pools 128
#: tokens), only when the short step is not clean.
BATCH, SEQ_LENGTHS = 2, (8, 256)

#: LoraConfig keys that only choose what is adapted or scale it: two plans that differ only
#: in these and adapt the same modules run the same step.
_SELECTION_KEYS = frozenset({"target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
                             "target_parameters", "r", "lora_alpha"})


@dataclass(frozen=True)
class StepCheck:
    """The outcome of one training step of an adapted model.

    ``checked`` lists the stages that ran clean, in order; ``stage`` is the one that failed
    (None when none did), with the exception (``error``, ``"AttributeError: …"``) and the
    path, in the user's model, of the innermost module whose code raised (``module``).
    """

    checked: tuple[str, ...]
    stage: str | None = None
    error: str | None = None
    module: str | None = None
    model: str = ""  # "shrunk copy (model.layers 32→2)" or "the model itself"
    note: str = ""  # why a stage was not checked, when one was not
    lora_parameters: int = 0  # LoRA parameters of the adapted modules the forward ran
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.stage is None

    def error_dict(self) -> dict[str, str | None] | None:
        if self.ok:
            return None
        kind, _, message = (self.error or "").partition(": ")
        return {"type": kind, "message": message, "stage": self.stage, "module": self.module}

    def to_dict(self) -> dict[str, Any]:
        return {"checked": list(self.checked), "stage": self.stage, "error": self.error, "module": self.module,
                "model": self.model, "note": self.note}


@dataclass
class StepModel:
    """The model a step adapts: a meta model, how its paths map to the user's, what to call it."""

    module: nn.Module
    label: str
    original_path: Callable[[str], str] = field(default=lambda path: path)


class StepChecker:
    """Training steps of adapted copies of one model, remembered per adapted module set.

    ``model`` is the user's meta model; ``shrunk`` the cheaper copy to step on (or None);
    ``supplied`` names inputs the model needs beyond the text collator's (TRAIN001 found
    them), fed as zeros so that the step tests the adapters, not the collator.
    """

    def __init__(self, model: nn.Module, shrunk: StepModel | None = None, *, supplied: tuple[str, ...] = (),
                 idle_stacks: frozenset[str] = frozenset()):
        self.full = StepModel(model, "the model itself")
        self.shrunk = shrunk
        self.supplied = supplied
        self.idle_stacks = idle_stacks  # lists of repeated blocks the model's own training forward never ran
        self._steps: dict[tuple, StepCheck] = {}
        #: per step that ran: for each length tried, in order, which adapted modules the forward
        #: ran and which of them no gradient reached (None where that attempt stopped earlier)
        self._reach: dict[tuple, list[tuple[frozenset[str], frozenset[str]] | None]] = {}
        self.seconds = 0.0
        self.unusable = ""  # why no forward can judge the adapters (the base model's own forward fails)
        #: the steps a forked worker ran ahead (:meth:`run_ahead`), asked for when first needed;
        #: returns ``archlint.fork.MISSING`` when the worker delivered none
        self.ahead: Callable[[], Any] | None = None

    def check(self, lora_kwargs: Mapping[str, Any], *, adapted: tuple[nn.Module, nn.Module] | None = None) -> StepCheck:
        """Inject ``LoraConfig(**lora_kwargs)``, run forward and backward; never raises.

        ``adapted``: ``(model, PEFT model)`` from a ``get_peft_model`` run of these very
        arguments on a fresh copy of ``model``, used instead of injecting again when
        ``model`` is the module this checker steps on; the step takes it over (it turns its
        tensors fake), so it is not to be used afterwards."""
        start = time.perf_counter()
        try:
            with _step_quiet():
                return self._check(dict(lora_kwargs), adapted)
        finally:
            self.seconds += time.perf_counter() - start

    def _check(self, kwargs: dict[str, Any], given: tuple[nn.Module, nn.Module] | None = None) -> StepCheck:
        step_model = self.shrunk or self.full
        if given is not None and given[0] is step_model.module:
            adapted, error, raised_in = given[1], None, ""
        else:
            adapted, error, raised_in = _inject(step_model.module, kwargs)
        if adapted is None and step_model is self.shrunk and _matched_nothing(error):
            step_model = self.full  # an entry that names a layer the copy does not keep
            adapted, error, raised_in = _inject(step_model.module, kwargs)
        if adapted is None:
            return StepCheck((), "inject", error, _user_path(step_model, raised_in), step_model.label)
        if self.unusable:
            return StepCheck(("inject",), model=step_model.label, note=self.unusable)
        key = (id(step_model.module), _adapted_set(adapted), _behaviour_key(kwargs))
        if key not in self._steps and step_model is self.full and self._all_idle(key[1]):
            # an entry naming a layer the copy does not keep, in a stack the forward never enters:
            # the step on the whole model would run its forward only to find no adapter ran
            self._steps[key] = StepCheck(("inject", "forward"), model=step_model.label,
                                         note=_NO_ADAPTER_RUNS)
        if key not in self._steps:
            self._steps[key] = (self._implied(key) or self._implied_by_reach(key)
                                or self._stepped_ahead(key, step_model) or self._step(key, step_model, adapted))
        return self._steps[key]

    def run_ahead(self, kwargs: Mapping[str, Any]) -> dict[tuple, tuple[StepCheck, list]]:
        """In a forked worker (:mod:`archlint.facts.ahead`): check ``LoraConfig(**kwargs)`` on
        the shrunk copy; the step that really ran, by key, with its per-length reach (empty
        when PEFT did not inject it there)."""
        with _step_quiet():
            adapted, _, _ = _inject(self.shrunk.module, dict(kwargs))
            if adapted is not None:
                self._check(dict(kwargs), (self.shrunk.module, adapted))
        return {key: (self._steps[key], reach) for key, reach in self._reach.items()}

    def _stepped_ahead(self, key: tuple, step_model: StepModel) -> StepCheck | None:
        """The worker's step for ``key``, where the worker stepped what this checker would:
        the shrunk copy with no supplied input."""
        if self.ahead is None or step_model is not self.shrunk or self.supplied:
            return None
        found = self.ahead()
        if not isinstance(found, dict) or key not in found:
            return None
        step, self._reach[key] = found[key]
        return step

    def _all_idle(self, adapted: tuple) -> bool:
        """Whether every adapted module (and every owner of an adapted parameter) is in a
        stack of repeated blocks the model's own training forward never ran."""
        modules, parameters = adapted
        owners = [*modules, *(p.rpartition(".")[0] for p in parameters)]
        return bool(owners) and all(any(o.startswith(f"{stack}.") for stack in self.idle_stacks) for o in owners)

    def _implied(self, key: tuple) -> StepCheck | None:
        """The clean step of a plan that adapts a superset of these modules, if one ran.

        A LoRA layer adds its delta to its base layer's output and changes nothing else, so
        adapting fewer modules of the same model cannot break a forward that ran with more,
        and a gradient that reached an adapter still reaches it when other modules are left
        frozen (the gradient flows through frozen layers' activations all the same)."""
        model, (modules, parameters), behaviour = key
        for (other_model, (other_modules, other_parameters), other_behaviour), step in self._steps.items():
            if (other_model, other_behaviour) != (model, behaviour) or not step.ok or step.checked != STAGES:
                continue
            if set(modules) <= set(other_modules) and set(parameters) <= set(other_parameters):
                return StepCheck(step.checked, model=step.model,
                                 note="implied by the clean step of a plan that adapts a superset of these modules")
        return None

    def _implied_by_reach(self, key: tuple) -> StepCheck | None:
        """The clean step of a plan adapting a subset of the modules of a step whose every
        attempt ran forward and backward, when at one of its lengths some of these modules
        ran and the gradient reached all of them.

        Modules only (no ``target_parameters``). The argument of :meth:`_implied`, per
        module: adapting fewer modules cannot break a forward that ran with more, which
        adapters a forward runs does not depend on which others exist, and whether the
        gradient of the loss reaches an adapter depends on the path from its output to the
        loss, which frozen layers keep; asking autograd for fewer gradients cannot raise
        where asking for more did not. So at that length this plan's own attempt is clean,
        and the attempts before it are not (the loop stops at the first clean one)."""
        model, (modules, parameters), behaviour = key
        if parameters:
            return None
        wanted = set(modules)
        for other, reach in self._reach.items():
            other_model, (other_modules, other_parameters), other_behaviour = other
            if (other_model, other_behaviour) != (model, behaviour) or other_parameters or None in reach:
                continue
            if not wanted <= set(other_modules):
                continue
            for ran, missing in reach:
                if wanted & ran and not wanted & missing:
                    return StepCheck(STAGES, model=self._steps[other].model,
                                     note="implied by the gradients of a step that adapts a superset of these modules")
        return None

    def _step(self, key: tuple, step_model: StepModel, adapted: nn.Module) -> StepCheck:
        """One step at the shortest length first; a longer one only when the short step is not
        clean (a model that needs more positions, an adapter a short input does not reach):
        ops that loop over positions (a recurrent scan) cost in proportion to the length."""
        start = time.perf_counter()
        paths = {id(m): _peft_path(p) for p, m in adapted.named_modules()}
        from torch._subclasses.fake_tensor import FakeTensorMode

        best = None
        reach = self._reach[key] = []
        for seq in SEQ_LENGTHS:
            check = self._attempt(step_model, adapted, paths, FakeTensorMode(allow_non_fake_inputs=True), seq, reach)
            if best is None or len(check.checked) >= len(best.checked):
                best = check
            if check.checked == STAGES:
                break
        return replace(best, seconds=time.perf_counter() - start)

    def _attempt(self, step_model: StepModel, adapted: nn.Module, paths: dict[int, str], mode, seq: int,
                 reach: list) -> StepCheck:
        """One forward and backward at length ``seq``; appends to ``reach`` which adapted
        modules ran and which of them got no gradient (None when backward did not run)."""
        reach.append(None)
        ran: list[nn.Module] = []
        hooks = [m.register_forward_hook(lambda module, args, out: ran.append(module)) for m in _lora_layers(adapted)]
        try:
            loss, error, raised_in = _forward(adapted, paths, self.supplied, mode, seq)
        finally:
            for hook in hooks:
                hook.remove()
        label = step_model.label
        if error is not None:
            return StepCheck(("inject",), "forward", error, _user_path(step_model, raised_in), label)
        ran_once = list(dict.fromkeys(ran))
        parameters = [(m, name, p) for m in ran_once for name, p in _lora_parameters(m)]
        if not parameters:
            return StepCheck(("inject", "forward"), model=label,
                             note=_NO_ADAPTER_RUNS)
        if loss is None:
            return StepCheck(("inject", "forward"), model=label,
                             note="the forward returns no loss or floating output; backward not checked")
        missing, error, raised_in = _backward(loss, parameters, paths, mode)
        if error is not None:
            return StepCheck(("inject", "forward"), "backward", error, _user_path(step_model, raised_in), label,
                             lora_parameters=len(parameters))
        reach[-1] = (frozenset(paths[id(m)] for m in ran_once), frozenset(paths[id(m)] for m in missing))
        if missing:
            module = missing[0]
            text = (f"RuntimeError: no gradient reaches the LoRA parameters of {len(missing)} adapted module(s) "
                    f"the forward ran (their output reaches the loss through no differentiable path, e.g. only "
                    f"through a top-k selection), e.g. {_user_path(step_model, paths[id(module)])}")
            return StepCheck(("inject", "forward"), "backward", text, _user_path(step_model, paths[id(module)]),
                             label, lora_parameters=len(parameters))
        return StepCheck(STAGES, model=label, lora_parameters=len(parameters))


def _inject(model: nn.Module, kwargs: dict[str, Any]) -> tuple[nn.Module | None, str | None, str]:
    from peft import LoraConfig, get_peft_model

    from .oracle import fresh_copy, refused_module

    copy = fresh_copy(model)
    paths = {id(m): p for p, m in copy.named_modules()}
    try:
        return get_peft_model(copy, LoraConfig(**kwargs), low_cpu_mem_usage=True), None, ""
    except Exception as e:  # PEFT's refusal is the answer, not archlint's failure
        return None, one_line(e), refused_module(e, copy) or _raising_module(e, paths)


def _matched_nothing(error: str | None) -> bool:
    return bool(error) and ("not found in the base model" in error or "No modules were targeted" in error
                            or "NoMatchingPeftModule" in error)


def _to_fake(model: nn.Module, mode) -> None:
    """Replace the adapted copy's meta parameters and buffers by fake CPU tensors of ``mode``,
    ties kept. Fake tensors hold no memory either, but code written for a real device runs
    as it would there: PEFT's parameter wrappers (``target_parameters``) re-register a
    parametrization in every forward (a mutation fake tensors allow and real meta tensors
    refuse) and open ``torch.autocast(device_type=W.device.type)``, which has no meta mode."""
    fakes: dict[int, torch.Tensor] = {}
    originals: list[torch.Tensor] = []  # alive until the end, so that no id is reused

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in fakes:
            originals.append(t)
            new = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            fakes[id(t)] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
        return fakes[id(t)]

    with mode:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[name] = fake(p)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[name] = fake(b)


def _forward(model: nn.Module, paths: dict[int, str], supplied: tuple[str, ...], mode, seq: int):
    """A fake training-mode forward with a loss: ``(loss, None, "")`` or ``(None, error, module)``."""
    model.train()
    try:
        _to_fake(model, mode)
        with mode:
            ids = torch.zeros(BATCH, seq, dtype=torch.long, device="cpu")
            base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PeftModel takes **kwargs
            return _loss(model(**collator_inputs(base, ids, supplied))), None, ""
    except Exception as e:  # the failure of the adapted model's forward is the finding
        return None, one_line(e), _raising_module(e, paths)


def _loss(output) -> torch.Tensor | None:
    """The sum of every floating output, the model's own loss among them: some objective may
    train on any output (a classifier on a headless model's ``pooler_output``; the
    next-sentence head of a pre-training class, whose loss needs labels a text collator does
    not give), so an adapter is dead only when no output depends on it differentiably."""
    floating = [v.float().sum() for v in _tensors(output) if v.is_floating_point()]
    return torch.stack(floating).sum() if floating else None


def _tensors(output, depth: int = 0) -> Iterator[torch.Tensor]:
    """Every tensor of a model output, nested outputs included (FLAVA's ``text_output``)."""
    if isinstance(output, torch.Tensor):
        yield output
    elif depth < 4 and isinstance(output, Mapping):
        for value in output.values():
            yield from _tensors(value, depth + 1)
    elif depth < 4 and isinstance(output, (tuple, list)):
        for value in output:
            yield from _tensors(value, depth + 1)


def _backward(loss: torch.Tensor, parameters, paths: dict[int, str], mode):
    """``(modules whose LoRA parameters got no gradient, None, "")`` or ``([], error, module)``."""
    tensors = [p for _, _, p in parameters]
    if not loss.requires_grad:  # nothing trainable on the loss's path: no adapter learns
        return list(dict.fromkeys(module for module, _, _ in parameters)), None, ""
    try:
        with mode:
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    except Exception as e:  # autograd's refusal (no grad_fn, an in-place op on a view) is the finding
        return [], one_line(e), _raising_module(e, paths)
    missing = [module for (module, _, _), grad in zip(parameters, grads, strict=True) if grad is None]
    return list(dict.fromkeys(missing)), None, ""


def _lora_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _lora_parameters(layer: nn.Module):
    for name, p in layer.named_parameters():
        if p.requires_grad and ("lora_" in name) and ".base_layer" not in f".{name}":
            yield name, p


def _adapted_set(adapted: nn.Module) -> tuple:
    tuner = adapted.base_model
    return (tuple(sorted(tuner.targeted_module_names)), tuple(sorted(tuner.targeted_parameter_names)))


def _behaviour_key(kwargs: Mapping[str, Any]) -> str:
    """What of ``LoraConfig(**kwargs)`` besides the selection can change a step. A key given
    its ``LoraConfig`` default makes the same config as leaving it out (LORA006's fix spells
    out ``lora_dropout=0.0``, the default), so such keys are left out too."""
    defaults = _lora_defaults()
    return repr(sorted((k, repr(v)) for k, v in kwargs.items()
                       if k not in _SELECTION_KEYS and not (k in defaults and _same_value(v, defaults[k]))))


@functools.cache
def _lora_defaults() -> dict[str, Any]:
    from peft import LoraConfig

    return {f.name: f.default if f.default is not MISSING else f.default_factory()
            for f in fields(LoraConfig) if f.default is not MISSING or f.default_factory is not MISSING}


def _same_value(value: Any, default: Any) -> bool:
    """Equal and of the same kind (``0.0`` is ``0``; ``False`` is not ``0``)."""
    return type(value) in (int, float) and type(default) in (int, float) and value == default or (
        type(value) is type(default) and value == default)


def _peft_path(path: str) -> str:
    """A path of the PEFT model as a path of the model PEFT adapted:
    ``base_model.model.model.layers.0.mlp.router.base_layer`` -> ``model.layers.0.mlp.router``."""
    for prefix in ("base_model.model.", "base_model."):
        if path.startswith(prefix):
            path = path[len(prefix):]
            break
    parts = path.split(".")
    for marker in ("base_layer", "lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B",
                   "lora_magnitude_vector"):
        if marker in parts:
            parts = parts[:parts.index(marker)]
    return ".".join(parts)


def _user_path(step_model: StepModel, path: str | None) -> str | None:
    if not path:
        return None
    return step_model.original_path(_peft_path(path))



@contextlib.contextmanager
def _step_quiet() -> Iterator[None]:
    """What every PEFT injection and step runs under: the libraries' warnings and fake-tensor
    logs kept off the user's output, bitsandbytes hidden from PEFT while nothing imported it."""
    with _quiet(), _fake_tensor_log_off(), unused_bitsandbytes_hidden():
        yield


@contextlib.contextmanager
def _fake_tensor_log_off() -> Iterator[None]:
    """FakeTensorMode logs every op whose meta kernel raises, with a traceback, before the
    exception reaches archlint; the exception is the step's answer, the log is noise."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
