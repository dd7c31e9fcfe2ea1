"""DIST001 no-split-modules-gap."""

from __future__ import annotations

from ..findings import Fix, Severity
from .base import Example, Rule


class NoSplitModulesGap(Rule):
    """`_no_split_modules` is missing, names absent classes, or misses a repeated block.

    What it does:
        For a transformers model, compares `_no_split_modules` with the classes in the
        built tree: flags a missing or empty list, names of classes that do not occur,
        and repeated block classes the list does not name.

    Why is this bad:
        FSDP's transformer auto-wrap (accelerate's FSDP plugin, PEFT's
        `fsdp_auto_wrap_policy`) reads the list and raises "Could not find the
        transformer layer class ... in the model" for a missing list or an absent class
        (error). A block class the list misses is wrapped with its neighbours and
        `device_map="auto"` may split it across devices ("Expected all tensors to be on
        the same device") (warning).

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
    severity_note = "warning when the declared classes exist but a repeated block is missing"
    tools = ("fsdp", "accelerate")

    VALID = (Example("fixtures/zoo/hf_tiny.py:tiny_llama"),)
    INVALID = (
        Example("fixtures/zoo/hf_tiny.py:NoCheckpointing", paths=("",), fix="TinyBlock"),
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
        wanted = sorted((declared & present) | set(blocks))
        # FSDP's transformer auto-wrap raises on a missing list or an absent class name.
        severity = Severity.ERROR if (absent or not declared) else Severity.WARNING
        yield self.finding(
            [""],
            f"{type(root).__name__}._no_split_modules " + "; ".join(problems),
            module_class=type(root).__name__,
            severity=severity,
            fix=Fix("Name the repeated blocks",
                    f"{type(root).__name__}._no_split_modules = {wanted!r}\n"
                    f"# FSDP: fsdp_config={{'transformer_layer_cls_to_wrap': {wanted!r}}}"),
            details={"declared": sorted(declared), "absent": absent, "missing": missing},
        )
