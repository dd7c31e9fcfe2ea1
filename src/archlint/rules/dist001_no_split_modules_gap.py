"""DIST001 no-split-modules-gap."""

from __future__ import annotations

import types

from ..findings import Confidence, Fix, Severity
from .base import Example, Rule


class NoSplitModulesGap(Rule):
    """`_no_split_modules` is missing, names absent classes, or misses a repeated block.

    What it does:
        For a transformers model, compares `_no_split_modules` (as transformers gathers it
        from every sub-model) with the classes in the built tree: flags a missing or empty
        list, names of classes that do not occur, and repeated block classes the list does
        not name. What FSDP's transformer auto-wrap does with the list is read by running
        accelerate's own policy code (`FullyShardedDataParallelPlugin.set_auto_wrap_policy`)
        on the meta model, when accelerate is installed.

    Why is this bad:
        A name of a class that does not occur made that code raise "Could not find the
        transformer layer class ... in the model" up to accelerate 1.15 (PEFT's
        `fsdp_auto_wrap_policy` raises too): error. accelerate 1.16 skips such names, and the
        policy wraps only the named classes that occur: a warning when that leaves a block
        unwrapped. The severity is what the installed accelerate does. A missing list raises
        nothing: the policy wraps no block, so the whole
        model is one FSDP unit whose parameters every rank gathers at once, and
        `device_map="auto"` may split a block across devices (warning). A block class the
        list misses is wrapped with its neighbours (warning).

    Example:
        A subclassed decoder layer whose class is not in the parent's list.

    Use instead:
        Set the list to the repeated block classes, as printed in the fix (and pass the
        same names to FSDP's `transformer_layer_cls_to_wrap`).

    References:
        https://github.com/huggingface/peft/issues/2166, https://github.com/verl-project/verl/pull/6290
    """

    code = "DIST001"
    name = "no-split-modules-gap"
    severity = Severity.ERROR
    severity_note = "warning when FSDP's auto-wrap runs but wraps no block or misses one"
    tools = ("fsdp", "accelerate")

    VALID = (Example("fixtures/zoo/hf_tiny.py:tiny_llama"),)
    INVALID = (
        Example("fixtures/zoo/hf_tiny.py:NoCheckpointing", paths=("",), fix="TinyBlock"),
        Example("fixtures/zoo/hf_tiny.py:AbsentNoSplitClass", paths=("",), fix="TinyBlock"),
    )

    def check(self, ctx):
        from transformers import PreTrainedModel

        root = ctx.graph.root
        if not isinstance(root, PreTrainedModel):
            return  # _no_split_modules is a transformers convention
        declared = set(getattr(root, "_no_split_modules", None) or ())
        present = {i.class_name for i in ctx.graph}
        blocks = sorted({g.representative.class_name for g in ctx.repeated_blocks})
        absent = sorted(declared - present)
        missing = [b for b in blocks if b not in declared]
        problems = []
        if not declared:
            problems.append("is not set")
        if absent:
            problems.append(f"names classes not in the model ({', '.join(absent)})")
        if missing:
            problems.append(f"misses the repeated block class{'es' if len(missing) > 1 else ''} {', '.join(missing)}")
        if not problems:
            return
        raised, wrapped = accelerate_wrap(root)
        if raised is None:  # accelerate not installed: the reading of its code, said at medium confidence
            raised = f"Could not find the transformer layer class {absent[0]} in the model." if absent else ""
            confidence = Confidence.MEDIUM
        else:
            confidence = Confidence.HIGH
        if raised:
            effect = f"FSDP's transformer auto-wrap raises: {raised}"
        elif not wrapped:
            effect = "FSDP's transformer auto-wrap wraps no block: the whole model is one unit, gathered at once"
        else:
            effect = f"FSDP's transformer auto-wrap leaves {', '.join(missing)} inside its neighbours' units"
        wanted = sorted((declared & present) | set(blocks))
        yield self.finding(
            [""],
            f"{type(root).__name__}._no_split_modules " + "; ".join(problems) + f"; {effect}",
            module_class=type(root).__name__,
            severity=Severity.ERROR if raised else Severity.WARNING,
            confidence=confidence,
            fix=Fix("Name the repeated blocks",
                    f"{type(root).__name__}._no_split_modules = {wanted!r}\n"
                    f"# FSDP: fsdp_config={{'transformer_layer_cls_to_wrap': {wanted!r}}}"),
            details={"declared": sorted(declared), "absent": absent, "missing": missing,
                     "fsdp_wrapped_classes": sorted(wrapped), "fsdp_error": raised or None},
        )


def accelerate_wrap(model) -> tuple[str | None, set[str]]:
    """What accelerate's FSDP plugin does with ``model._no_split_modules``: the message it
    raises ("" when none) and the classes its transformer auto-wrap policy wraps. None for
    the message when accelerate is not installed."""
    try:
        from accelerate.utils.dataclasses import FullyShardedDataParallelPlugin
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    except ImportError:
        return None, set()
    # the plugin's method reads only these two attributes of the plugin
    plugin = types.SimpleNamespace(auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=None)
    try:
        FullyShardedDataParallelPlugin.set_auto_wrap_policy(plugin, model)
    except ValueError as e:
        return str(e), set()
    policy = plugin.auto_wrap_policy
    return "", {type(m).__name__ for m in model.modules()
                if m is not model and policy(module=m, recurse=False, nonwrapped_numel=0)}
