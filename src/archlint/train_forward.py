"""One training-mode forward of the whole model under ``FakeTensorMode``, fed exactly
what a text-only collator produces (``input_ids``, ``attention_mask``, ``labels``).

Fake tensors carry shapes and dtypes but no memory, and transformers skips its
data-dependent mask shortcuts while tracing, so the real
installed forward code runs end to end. What it raises tells whether text-only training
works (TRAIN001): ``Molmo2Model.forward`` raises "`mm_token_type_ids` is required as a
model input when training" in transformers 5.24; Gemma-4 did until transformers fixed it.

To stay cheap it runs on a separate copy of a transformers model whose config is shrunk
to one layer per distinct repeated-block structure (at least two), see :mod:`.shrink`.
A forward that fails on the copy for any other reason is retried on the user's model.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .build import BuiltModel
from .errors import one_line
from .shrink import ShrunkModel

#: What a text-only collator (TRL's, DataCollatorForLanguageModeling) hands the model.
TEXT_INPUTS = ("input_ids", "attention_mask", "labels")
BATCH, SEQ = 2, 8


class ForwardStatus(enum.StrEnum):
    OK = "ok"
    MISSING_INPUT = "missing-input"  # supplying the named input made the error go away
    FAILED = "failed"  # any other exception: nothing is known
    NOT_APPLICABLE = "not-applicable"  # the forward takes no input_ids: not a text model


@dataclass(frozen=True)
class ForwardOutcome:
    """What the fake training forward did (``status``); with ``MISSING_INPUT``, ``missing``
    names the input."""

    status: ForwardStatus
    model: str  # which model ran: "shrunk copy (…)" or "the model itself"
    seconds: float
    missing: str | None = None
    error: str = ""  # "ValueError: …" of the failing forward
    raised_in: str = ""  # module path whose forward raised ("" = root)
    details: dict[str, Any] = field(default_factory=dict)
    #: the user's-model paths of the modules whose forward ran, when the forward ran clean
    ran: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


def training_forward(built: BuiltModel, copy: ShrunkModel | None) -> ForwardOutcome:
    """Run the fake training forward of the built model (its shrunk ``copy`` first, when
    there is one); the outcome. Each lint asks once, through its facts
    (:mod:`archlint.facts.training`), which make the copy once for this forward and the
    LoRA training steps."""
    start = time.perf_counter()
    if not _takes_token_ids(built.module):
        return ForwardOutcome(ForwardStatus.NOT_APPLICABLE, "", 0.0)  # no forward, or not a token model
    with _quiet():
        if copy is not None:
            outcome = run(copy.module, label=copy.description, path_map=copy.original_path)
            if outcome.status is not ForwardStatus.FAILED:
                return _with_seconds(outcome, start)
        outcome = run(built.module, label="the model itself")
        return _with_seconds(outcome, start)


@contextlib.contextmanager
def _quiet():
    """Keep the warnings of archlint's own forward (transformers' loss and config
    notices, e.g. "`loss_type=None` was set") out of the user's output."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)


def _with_seconds(outcome: ForwardOutcome, start: float) -> ForwardOutcome:
    return ForwardOutcome(**{**outcome.__dict__, "seconds": time.perf_counter() - start})


def run(model: nn.Module, *, label: str, path_map=None) -> ForwardOutcome:
    """Run ``model`` in training mode on the text inputs; if it raises naming a forward
    parameter that was not passed, run again with that input supplied (zeros) to confirm
    the input is what was missing."""
    paths = {id(m): (path_map or _same)(p) for p, m in model.named_modules()}
    ran: set[str] = set()
    error, raised_in = _forward(model, paths, ran=ran)
    if error is None:
        return ForwardOutcome(ForwardStatus.OK, label, 0.0, ran=frozenset(ran))
    text = one_line(error)
    for name in _named_missing_inputs(model, error):
        again, _ = _forward(model, paths, supplied=(name,))
        if again is None or _message(again) != _message(error):
            # An input the forward needs in inference as well is what the model is for (pixel
            # values of an image-text model), not a trap of training: the eval-mode forward says.
            inference, _ = _forward(model, paths, training=False)
            return ForwardOutcome(ForwardStatus.MISSING_INPUT, label, 0.0, missing=name, error=text,
                                  raised_in=raised_in,
                                  details={"with_input": "ok" if again is None else one_line(again),
                                           "inference": "ok" if inference is None else one_line(inference)})
    return ForwardOutcome(ForwardStatus.FAILED, label, 0.0, error=text, raised_in=raised_in)


def _takes_token_ids(model: nn.Module) -> bool:
    if type(model).forward is nn.Module.forward:
        return False  # _forward_unimplemented: a container, nothing to run
    parameters = _forward_parameters(model)
    return parameters is not None and "input_ids" in parameters


def _forward_parameters(model: nn.Module) -> dict[str, inspect.Parameter] | None:
    try:
        return dict(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return None


def _same(path: str) -> str:
    return path


def _forward(model: nn.Module, paths: dict[int, str], *, supplied: tuple[str, ...] = (), training: bool = True,
             ran: set[str] | None = None) -> tuple[Exception | None, str]:
    """One fake forward in training mode (or eval mode: ``training=False``), plus all-zero
    ``supplied`` inputs; the exception, if any, and the path of the innermost module whose
    forward raised it. The paths of the modules whose forward ran are added to ``ran``."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    modes = [(m, m.training) for m in model.modules()]
    state = _plain_tensor_state(model)
    hooks = [] if ran is None else [m.register_forward_pre_hook(lambda module, args: ran.add(paths[id(module)]))
                                    for m in model.modules()]
    model.train(training)
    try:
        # Inputs must be created on meta inside the mode, like the meta parameters
        # (as the model's own are); allow_non_fake_inputs admits the parameters.
        with FakeTensorMode(allow_non_fake_inputs=True):
            model(**collator_inputs(model, torch.zeros(BATCH, SEQ, dtype=torch.long, device="meta"), supplied))
        return None, ""
    except Exception as e:  # any failure of the fake forward is data, never a crash
        return e, _raising_module(e, paths)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.training = training
        _restore_plain_tensor_state(state)


def collator_inputs(model: nn.Module, ids: torch.Tensor, supplied: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword arguments of a training forward of ``model`` on token ids ``ids``: what a
    text-only collator gives (those ``model.forward`` accepts: a headless model takes no
    labels), all-zero ``supplied`` inputs, and ``use_cache=False``. Training keeps no KV
    cache (Trainer and TRL turn it off); under fake tensors a cache would allocate real
    tensors, and one some forwards deep-copy (Inkling2-Loop's looped layers) makes torch copy
    fake tensors' storage, which fails and leaves the process to crash later."""
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    inputs = {k: v for k, v in inputs.items() if _accepts(model, k)}
    inputs.update({name: torch.zeros_like(ids) for name in supplied})
    if _accepts(model, "use_cache"):
        inputs["use_cache"] = False
    return inputs


def _plain_tensor_state(model: nn.Module) -> list[tuple[nn.Module, dict[str, Any], list[dict[str, Any]]]]:
    """Each module's plain tensor attributes and its parameter, buffer and submodule tables.

    A forward may cache tensors on its module as plain attributes (transformers' longrope
    rotary embedding sets ``long_inv_freq`` in its first forward), or replace its own
    parameters (SwitchTransformers' router casts its classifier with ``.to(dtype)`` in every
    forward); made under the fake mode, such a tensor belongs to a mode that ends with this
    forward, and a later fake forward of the model or of a copy of it (the LoRA training
    step) would meet a fake tensor of a dead mode (a segmentation fault in torch's
    fake-tensor conversion), and a later probe of the module could not move it (a fake
    parameter holds a weak reference, so ``_apply`` cannot swap it)."""
    return [(m, {k: v for k, v in vars(m).items() if isinstance(v, torch.Tensor)},
             [dict(m._parameters), dict(m._buffers), dict(m._modules)]) for m in model.modules()]


def _restore_plain_tensor_state(state) -> None:
    """Undo what the fake forward did to plain tensor attributes and to the parameter, buffer
    and submodule tables of every module the model had before it: the user's model is left
    as it was."""
    for module, before, tables in state:
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and before.get(name) is not value:
                if name in before:
                    setattr(module, name, before[name])
                else:
                    delattr(module, name)
        for table, kept in zip((module._parameters, module._buffers, module._modules), tables, strict=True):
            if table.keys() != kept.keys() or any(table[k] is not v for k, v in kept.items()):
                table.clear()
                table.update(kept)


def _accepts(model: nn.Module, name: str) -> bool:
    parameters = _forward_parameters(model) or {}
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _raising_module(error: BaseException, paths: dict[int, str], local: str = "self") -> str:
    """The path of the innermost module of ``paths`` that the traceback's frames hold as the
    local ``local`` (``self``: the module whose code raised); "" when none."""
    tb, found = error.__traceback__, ""
    while tb is not None:
        owner = tb.tb_frame.f_locals.get(local)
        if isinstance(owner, nn.Module) and id(owner) in paths:
            found = paths[id(owner)]
        tb = tb.tb_next
    return found


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _named_missing_inputs(model: nn.Module, error: BaseException) -> list[str]:
    """Tensor parameters of ``model.forward`` that were not passed and that the error
    message names as a whole word (`` `mm_token_type_ids` is required …``,
    ``forward() missing 1 required positional argument: 'pixel_values'``)."""
    text = str(error)
    names = []
    for p in (_forward_parameters(model) or {}).values():
        if p.name in TEXT_INPUTS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = "" if p.annotation is p.empty else str(p.annotation)
        if annotation and "Tensor" not in annotation:
            continue  # flags and caches (use_cache, cache) are not collator columns
        if re.search(rf"(?<![\w.]){re.escape(p.name)}(?!\w)", text):
            names.append(p.name)
    return names
