"""Facts computed ahead, in a forked worker on the second core (:mod:`archlint.fork`).

The two costliest oracles of a cold lint do not depend on anything the rules find: the
training step of the widest plan (one fake-tensor forward and backward of the adapted
shrunk copy) and the quantization preview (transformers' quantizer run twice on copies of
the model). Right after the build, the shrunk copy is made and PEFT imported, then a
child is forked that computes them while this process runs the training forward, the PEFT
runs, the traces and the rules; each is taken from the child where this process would
have computed it, and computed here when the child did not deliver it.

Why the values are the ones this process would have computed:

* **steps** -- the child makes a :class:`~archlint.lora.training_step.StepChecker` on the
  same shrunk copy (the fork shares it: the same object, at the same address), injects each
  plan of the lint (the user's plan, or the common recipes), and steps them widest first
  with the checker's own implications; it sends every step it really ran, keyed as this
  process keys them (``id`` of the stepped module, adapted names, behaviour). This process
  takes a step from it only where it would run that step itself (no implication from its
  own earlier steps stands for it), on the shrunk copy, with no supplied input: the child
  assumed the model's own training forward needs none, which TRAIN001's forward confirms
  here first. A step is a deterministic function of the module, the LoRA configuration and
  the inputs, so the same key means the same outcome.
* **quantization** -- the preview of a config that ships a ``quantization_config`` of a
  method other than bitsandbytes, asked for by no ``--quantization``: the child runs the
  same function on the same model and config. bitsandbytes methods are previewed here,
  because their quantizer imports bitsandbytes, and once it is imported PEFT's later runs
  in this process see it (:mod:`archlint.lora.unused_bitsandbytes`).

The report is the same byte for byte with and without the worker (``ARCHLINT_WORKER=0``);
the worker only moves work to the other core.
"""

from __future__ import annotations

from typing import Any

from ..fork import MISSING, Worker, available, fork_worker
from ..lora.plan import ALL_LINEAR
from ..lora.recipes import common_recipes
from ..lora.training_step import StepChecker, StepModel
from ..quantize.request import config_quantization
from .base import Facts
from .load_time import quantization

__all__ = ["MISSING", "start"]


def start(facts: Facts, *, plans: bool) -> Worker | None:
    """Fork the worker for this lint (None when there is nothing to do ahead, or no second
    core); ``plans``: whether the lint evaluates plans (a plan is given or a LoRA rule runs).
    A quantization preview the worker does not compute is computed here, first."""
    fork = available()
    quantization_ahead = fork and _quantization_ahead(facts)
    if not quantization_ahead:
        _ = facts.quantization  # first, as in every lint: a quantizer that imports bitsandbytes does so before PEFT
    if not fork:
        return None
    jobs = []
    if plans and _prepare_steps(facts):
        jobs.append(("steps", lambda: _steps(facts)))
    if quantization_ahead:
        jobs.append(("quantization", lambda: quantization(facts)))
    return fork_worker(jobs)


def _prepare_steps(facts: Facts) -> bool:
    """Make the shrunk copy and import PEFT here, before the fork, so that the child and this
    process share both; whether a step can be taken ahead."""
    from ..lora.oracle import peft_available
    from ..lora.unused_bitsandbytes import unused_bitsandbytes_hidden

    if facts.shrunk_model is None:
        return False
    with facts.timed("plans"), unused_bitsandbytes_hidden():
        return peft_available()


def _steps(facts: Facts) -> dict[tuple, tuple[Any, Any]]:
    """In the child: the step of the plan the lint steps first, assuming the model's own
    training forward needs no extra input. That is the widest plan: the user's, or among
    the recipes ``all-linear``, which adapts every linear layer the named recipes can reach
    (when it does not, the lint steps a named recipe itself, and the child's step is unused)."""
    copy = facts.shrunk_model
    checker = StepChecker(facts.built.module, StepModel(copy.module, copy.description, copy.original_path))
    plans = [facts.plan] if facts.plan is not None else common_recipes(facts.built.model_type)
    widest = next((p for p in plans if p.target_modules == ALL_LINEAR), plans[0])
    return checker.run_ahead(widest.lora_kwargs())


def _quantization_ahead(facts: Facts) -> bool:
    if facts.quantization_request is not None:
        return False
    shipped = config_quantization(facts.config)
    if shipped is None:
        return False
    method = str(shipped.get("quant_method", "")).lower()
    return "bitsandbytes" not in method and not any(k in shipped for k in ("load_in_4bit", "load_in_8bit"))
