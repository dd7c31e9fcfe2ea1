"""The training-step facts: the shrunk copy both run on, the fake training forward of the
model (TRAIN001), and the LoRA training steps of the plans and fixes."""

from __future__ import annotations

from ..lora.training_step import StepChecker, StepModel
from ..shrink import ShrunkModel, shrunk_copy
from ..train_forward import ForwardOutcome
from ..train_forward import training_forward as run_training_forward
from .base import Facts, fact


@fact(phase="forward")
def shrunk_model(facts: Facts) -> ShrunkModel | None:
    """The model with its repeated blocks cut to one layer per structure (:mod:`archlint.shrink`),
    made once per lint; None when it cannot be made faithfully."""
    return shrunk_copy(facts.built, facts.graph)


@fact(phase="forward")
def training_forward(facts: Facts) -> ForwardOutcome:
    """The outcome of one training-mode forward under fake tensors, fed what a text-only
    collator gives (:mod:`archlint.train_forward`)."""
    return run_training_forward(facts.built, facts.shrunk_model)


@fact(phase="steps")
def training_steps(facts: Facts) -> StepChecker:
    """The LoRA training steps of this lint (:mod:`archlint.lora.training_step`): on the
    shrunk copy, with the input TRAIN001 found missing supplied; when the model's own
    forward cannot run, the steps say that forward and backward were not checked."""
    base = facts.training_forward
    copy = facts.shrunk_model
    # the steps run where the model's own forward ran: a copy whose forward failed where the model's
    # did not (an expert kernel that takes only the dtype the copy lost) would blame every plan
    faithful = copy is not None and (base.status != "ok" or base.model == copy.description)
    shrunk = StepModel(copy.module, copy.description, copy.original_path) if faithful else None
    checker = StepChecker(facts.built.module, shrunk, supplied=(base.missing,) if base.missing else (),
                          idle_stacks=_idle_stacks(facts, base))
    if facts.worker is not None:
        checker.ahead = lambda: facts.ahead("steps")  # the worker's steps (facts/ahead.py)
    if base.status == "failed":
        checker.unusable = f"the model's own training forward fails ({base.error}); forward and backward not checked"
    elif base.status == "missing-input" and base.details.get("with_input") != "ok":
        # supplied as zeros shaped like the token ids, the input still does not let the model run
        # (pixel values need an image shape): every plan's forward would fail the same way
        checker.unusable = (f"the model's own training forward fails with `{base.missing}` supplied as zeros "
                            f"({base.details.get('with_input')}); forward and backward not checked")
    elif base.status == "not-applicable":
        checker.unusable = "the model takes no input_ids; forward and backward not checked"
    return checker


def _idle_stacks(facts: Facts, base) -> frozenset[str]:
    """The lists of repeated blocks none of whose modules the model's own training forward ran
    (a vision tower on text input), when that forward ran clean: adapters in them cannot run
    in a step either, whichever layer they are in (a layer's forward runs only if its list's
    loop calls it, and a list whose loop called no layer of the copy calls none of the model)."""
    if base.status != "ok" or not base.ran:
        return frozenset()
    return frozenset(path for path in facts.graph.blocks.lists
                     if path not in base.ran and not any(p.startswith(f"{path}.") for p in base.ran))
