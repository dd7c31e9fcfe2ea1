"""With a user plan, LORA001–LORA006 speak only about what the plan touches.

A finding is kept when its modules are among those the plan's entries reach (before
PEFT's type dispatch, so the wrapper PEFT raises on counts) or the owners of the
parameters it reaches. LORA005 (fused projections) is also kept when an entry matches
nothing -- the fused name is then usually the reason. LORA004 (name collision) is kept when the plan reaches more than one tower or a module
PEFT cannot wrap. LORA006 (stacked experts) is kept
when the plan adapts anything in the same repeated block as the experts: the user is
adapting that layer and should know what happens to its experts.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..findings import Finding
from ..peft_support import is_lora_layer
from .context import model_index, touched_paths
from .evaluate import PlanEvaluation

RESTRICTED = ("LORA001", "LORA002", "LORA003", "LORA004", "LORA005", "LORA006")


def restrict(ctx, findings: Iterable[Finding], evaluation: PlanEvaluation) -> list[Finding]:
    touched = touched_paths(evaluation)
    index = model_index(ctx)
    touched_blocks = {index.block_of(p) for p in touched} - {None}
    dead_entry = any(e.matches == 0 for e in evaluation.entries)
    kept = []
    for f in findings:
        hit = set(f.paths) & touched
        if f.code == "LORA004":
            # a name collision matters when the plan reaches more than one of the towers, or a
            # module PEFT cannot wrap; an anchored regex inside one tower is the fix, not a finding
            if len({ctx.graph.info(p).tower for p in hit}) > 1 or any(not is_lora_layer(ctx.graph.info(p).module) for p in hit):
                kept.append(f)
        elif f.code not in RESTRICTED or hit:
            kept.append(f)
        elif f.code == "LORA005" and dead_entry:
            kept.append(f)
        elif f.code == "LORA006" and {index.block_of(p) for p in f.paths} & touched_blocks:
            kept.append(f)
    return kept
