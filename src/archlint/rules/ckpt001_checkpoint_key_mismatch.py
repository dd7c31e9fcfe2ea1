"""CKPT001 checkpoint-key-mismatch."""

from __future__ import annotations

import re

from ..findings import Fix, Severity
from .base import Example, Rule


class CheckpointKeyMismatch(Rule):
    """Parameters the checkpoint does not provide, and checkpoint keys nothing loads.

    What it does:
        Reads the safetensors headers of the checkpoint (a local folder always; a Hub
        repository with `--check-checkpoint`), builds a state dict of meta tensors with
        their names, shapes and dtypes, and runs transformers' own loader on the meta
        model (put back as it was afterwards): its key renames and weight conversions (per-expert MoE keys
        stacked into one parameter, fused projections split), weight tying and ignore
        lists apply. Reports the loader's `missing_keys` and `unexpected_keys`, exactly
        as `from_pretrained(..., output_loading_info=True)` returns them, and the
        conversions it could not run (then `from_pretrained` raises after its report).
        For a pre-quantized checkpoint (MXFP4, fine-grained FP8) transformers' quantizer
        takes part as in `from_pretrained`: blocks, scales and `weight_scale_inv` keys
        are matched by its own conversions.

    Why is this bad:
        `from_pretrained` does not fail on either: missing parameters are randomly
        initialised, unexpected keys are dropped, and the report scrolls away. A wrapper
        that renamed `q_proj.weight` to `q_proj.linear.weight`, or a tower moved from
        `language_model.model.layers` to `model.language_model.layers`, loads a model
        that trains from noise.

    Example:
        A checkpoint storing `model.layers.0.self_attn.q_proj.linear.weight` for a
        model whose parameter is `model.layers.0.self_attn.q_proj.weight`.

    Use instead:
        Rename the keys (`key_mapping={...}` in `from_pretrained`, or re-save the
        checkpoint), or load the class the checkpoint was saved from.

    References:
        https://huggingface.co/docs/transformers/main/en/weightconverter
    """

    code = "CKPT001"
    name = "checkpoint-key-mismatch"
    severity = Severity.ERROR
    tools = ("transformers",)

    VALID = (Example("fixtures/checkpoints/tiny-llama"),)
    INVALID = (
        Example("fixtures/checkpoints/tiny-llama-broken",
                paths=("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"), fix="key_mapping"),
    )

    def check(self, ctx):
        found = ctx.checkpoint
        if found is None or found.unavailable or not (found.missing or found.unexpected or found.conversion_errors):
            return
        owners = sorted({_owner(k) for k in found.missing if _owner(k) in ctx.graph.nx.nodes}) or [""]
        classes = sorted({ctx.graph.info(p).class_name for p in owners})
        parts = []
        if found.missing:
            parts.append(f"{len(found.missing)} parameter(s) missing from the checkpoint would be randomly initialised")
        if found.unexpected:
            parts.append(f"{len(found.unexpected)} checkpoint key(s) load into nothing")
        if found.conversion_errors:
            first, why = next(iter(found.conversion_errors.items()))
            parts.append(f"{len(found.conversion_errors)} conversion(s) failed, so from_pretrained raises after its "
                         f"report ({first}: {why})")
        yield self.finding(
            owners,
            "; ".join(parts) + f" ({found.source})",
            module_class=", ".join(classes),
            fix=Fix("Map the checkpoint's keys to the model's", _mapping_hint(found.missing, found.unexpected)),
            details={"missing": found.missing, "unexpected": found.unexpected,
                     "mismatched": found.to_dict()["mismatched"],
                     **({"conversion_errors": found.conversion_errors} if found.conversion_errors else {})},
        )


def _owner(key: str) -> str:
    return key.rpartition(".")[0]


def _mapping_hint(missing: list[str], unexpected: list[str]) -> str:
    """A ``key_mapping`` (regex on checkpoint keys -> replacement, as ``from_pretrained``
    applies it) for unexpected keys one segment away from a missing one
    (``q_proj.linear.weight`` -> ``q_proj.weight``); the remaining keys listed."""
    rules: dict[str, str] = {}
    matched_missing, matched_unexpected = set(), set()
    for u in unexpected:
        for m in missing:
            rule = _one_segment_rule(u, m)
            if rule is not None:
                rules.setdefault(*rule)
                matched_missing.add(m)
                matched_unexpected.add(u)
                break
    lines = []
    if rules:
        body = ", ".join(f'r"{k}": "{v}"' for k, v in list(rules.items())[:3])
        lines.append(f"from_pretrained(..., key_mapping={{{body}}})")
    rest_missing = [m for m in missing if m not in matched_missing]
    rest_unexpected = [u for u in unexpected if u not in matched_unexpected]
    if rest_missing:
        lines.append("missing: " + ", ".join(rest_missing[:5]) + (" ..." if len(rest_missing) > 5 else ""))
    if rest_unexpected:
        lines.append("unexpected: " + ", ".join(rest_unexpected[:5]) + (" ..." if len(rest_unexpected) > 5 else ""))
    return "\n".join(lines)


def _one_segment_rule(stored: str, wanted: str) -> tuple[str, str] | None:
    """``(regex, replacement)`` turning ``stored`` into ``wanted`` when they differ by one
    inserted or removed segment, anchored on the segments around it (``q_proj\\.linear\\.weight$``)."""
    x, y = stored.split("."), wanted.split(".")
    if abs(len(x) - len(y)) != 1:
        return None
    longer, shorter = (x, y) if len(x) > len(y) else (y, x)
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1:] == shorter:
            start = max(0, i - 1)
            return r"\.".join(re.escape(p) for p in x[start:]) + "$", ".".join(y[start:])
    return None
