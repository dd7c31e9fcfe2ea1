"""TRAIN001 required-training-input."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..train_forward import TEXT_INPUTS, ForwardStatus
from .base import Example, Rule


class RequiredTrainingInput(Rule):
    """In training mode the forward raises without an input a text collator does not produce.

    What it does:
        Runs the whole model's forward once in training mode under `FakeTensorMode` (no
        memory; on a copy with one layer per distinct block structure), fed exactly what a
        text-only collator gives: `input_ids`, `attention_mask`, `labels` (and
        `use_cache=False`, as Trainer and TRL train). When the
        installed code raises an error naming a forward argument that was not passed, and
        the same forward with that argument supplied no longer raises it, the argument is
        reported. A forward that fails for any other reason is reported as not checked
        (info, low confidence), never as a missing input.

    Why is this bad:
        TRL's `SFTTrainer` with text-only data, or any tokenizer-based collator, crashes
        at the first step: `ValueError: mm_token_type_ids is required as a model input
        when training` (Molmo2 in transformers 5.24; Gemma-4 until transformers fixed it;
        Gemma-3's `token_type_ids`). The trainer also drops dataset columns the model's
        signature does not list unless told otherwise.

    Example:
        `Molmo2ForConditionalGeneration` trained on text-only batches.

    Use instead:
        Add an all-zero column for the input and keep it through the collator
        (`remove_unused_columns=False`), or load the text-only class of the model.

    References:
        https://github.com/huggingface/transformers/issues/45200,
        https://github.com/huggingface/trl/issues/5807
    """

    code = "TRAIN001"
    name = "required-training-input"
    severity = Severity.ERROR
    severity_note = ("info when the fake training forward could not run (nothing was checked), or when the "
                     "forward needs the input in inference as well (an image-text model's pixel values)")
    confidence = Confidence.MEDIUM  # established by running the forward, not by structure
    tools = ("trl", "transformers")

    VALID = (
        Example("fixtures/zoo/training.py:TextOnly"),
        Example("fixtures/zoo/hf_tiny.py:tiny_llama"),
    )
    INVALID = (
        Example("fixtures/zoo/training.py:NeedsTokenTypes", paths=("",), fix='"token_type_ids"'),
    )

    def check(self, ctx):
        outcome = ctx.training_forward
        details = {"forward": outcome.status, "ran_on": outcome.model, "inputs": list(TEXT_INPUTS)}
        path = outcome.raised_in if outcome.raised_in in ctx.graph.nx else ""
        module = ctx.graph.info(path).class_name
        if outcome.status is ForwardStatus.MISSING_INPUT and outcome.details.get("inference", "ok") != "ok":
            # the eval-mode forward raises too: the input is what the model runs on, not a training trap
            name = outcome.missing
            yield self.finding(
                [path],
                f"{module}.forward needs `{name}` in inference as well, so the model does not run on text "
                f"alone (a text-only collator cannot train it): {outcome.error}",
                module_class=module,
                severity=Severity.INFO,
                details={**details, "input": name, "error": outcome.error, "with_input": outcome.details["with_input"],
                         "inference": outcome.details["inference"]},
            )
        elif outcome.status is ForwardStatus.MISSING_INPUT:
            name = outcome.missing
            yield self.finding(
                [path],
                f"in training mode {module}.forward raises without `{name}`, which a text-only "
                f"collator does not produce: {outcome.error}",
                module_class=module,
                fix=Fix(
                    f"Give every batch an all-zero `{name}` and keep it through the collator, "
                    f"or load the text-only class",
                    f'batch["{name}"] = torch.zeros_like(batch["input_ids"])  '
                    f"# in the collator, with SFTConfig(remove_unused_columns=False)",
                ),
                details={**details, "input": name, "error": outcome.error, "with_input": outcome.details["with_input"]},
            )
        elif outcome.status is ForwardStatus.FAILED:
            # Not knowing is not a finding about the model: say so quietly.
            yield self.finding(
                [path],
                f"the fake training forward could not run ({outcome.error}); "
                f"inputs required in training were not checked",
                module_class=module,
                severity=Severity.INFO,
                confidence=Confidence.LOW,
                details={**details, "error": outcome.error},
            )
