"""The training-step facts: what a fake training forward of the model does (TRAIN001)."""

from __future__ import annotations

from ..train_forward import ForwardOutcome, training_forward as run_training_forward
from .base import Facts, fact


@fact(phase="forward")
def training_forward(facts: Facts) -> ForwardOutcome:
    """The outcome of one training-mode forward under fake tensors, fed what a text-only
    collator gives (:mod:`archlint.train_forward`)."""
    return run_training_forward(facts.built, facts.graph)
