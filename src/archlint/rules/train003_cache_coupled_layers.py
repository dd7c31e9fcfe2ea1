"""TRAIN003 cache-coupled-layers."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from packaging.version import InvalidVersion, Version

from ..findings import Confidence, Fix, Severity
from .base import Example, Rule

#: transformers passes shared K/V independently of the cache from this version on (PR #45312).
FIXED_IN = Version("5.5.2")

#: Child names that compute keys or values (split, or fused with the query).
_KV_CHILD = re.compile(r"^(k|v|kv|qkv|wk|wv|wqkv|key|value|c_attn|query_key_value)(_proj|_lin|_linear)?$", re.I)


def installed_transformers_version() -> Version | None:
    """The installed transformers' version, from its package metadata."""
    try:
        return Version(version("transformers"))
    except (PackageNotFoundError, InvalidVersion):
        return None


class CacheCoupledLayers(Rule):
    """Layers that take their keys and values from another layer instead of computing them.

    What it does:
        Finds attention modules without key/value projections of their own next to
        attention modules of the same class that have them, and the config's
        `num_kv_shared_layers`. For transformers' own classes it reads the installed
        version: before 5.5.2 the shared K/V travelled through the KV cache (warning);
        from 5.5.2 on they are passed independently of it (info). Remote or hand-written
        code gets a warning: transformers' fix is not in it.

    Why is this bad:
        Up to transformers 5.5.x, `use_cache=False` (set by TRL and most QLoRA recipes)
        or gradient checkpointing (which drops the cache argument) left the receiving
        layers without the donor's K/V: silently wrong logits, a loss that does not
        converge (16.2 instead of 6.8 teacher-forced). Nothing raises. LoRA target lists
        also cover fewer layers than expected, since these layers have no `k_proj`/`v_proj`.

    Example:
        Gemma-4 E2B: the last 20 of 35 text layers reuse K/V (`num_kv_shared_layers=20`).

    Use instead:
        transformers 5.5.2 or newer; on an older one, train with `use_cache=True` and
        without gradient checkpointing.

    References:
        https://github.com/huggingface/transformers/pull/45312,
        https://github.com/unslothai/unsloth-zoo/pull/813
    """

    code = "TRAIN003"
    name = "cache-coupled-layers"
    severity = Severity.WARNING
    severity_note = "info when the installed transformers carries the fix"
    tools = ("transformers", "trl")

    VALID = (
        Example("fixtures/zoo/hf_tiny.py:tiny_llama"),
        Example("fixtures/zoo/attention.py:WideHeads", note="no layer has k/v projections: nothing is shared"),
    )
    INVALID = (
        Example("fixtures/zoo/training.py:KVSharing", paths=("layers.2.attn", "layers.3.attn"),
                fix="use_cache = True"),
    )

    def check(self, ctx):
        shared = max((v for _, v in ctx.config_values("num_kv_shared_layers") if isinstance(v, int)), default=0)
        receivers = _receivers(ctx)
        if not receivers and not shared:
            return
        installed = installed_transformers_version()
        native = type(ctx.built.module).__module__.startswith("transformers.")
        fixed = native and installed is not None and installed >= FIXED_IN
        paths = [p for g in receivers for p in g.paths] or [""]
        module_class = receivers[0].representative.class_name if receivers else type(ctx.built.module).__name__
        what = (f"{len(paths)} attention layer(s) have no key/value projections and reuse another layer's K/V"
                if receivers else f"the config shares K/V across the last {shared} layers")
        config_note = f" (num_kv_shared_layers={shared})" if shared else ""
        if fixed:
            message = (f"{what}{config_note}; transformers {installed} passes them independently of the cache "
                       f"(fixed in {FIXED_IN}), so use_cache=False and gradient checkpointing are safe here, "
                       f"not on older versions")
            fix = Fix(f"Keep transformers >= {FIXED_IN} wherever this model is trained", f"transformers>={FIXED_IN}")
        elif not native:
            # Remote or hand-written code: transformers' fix is not in it.
            message = (f"{what}{config_note}; {type(ctx.built.module).__name__} is not transformers' code, so "
                       f"whether use_cache=False (TRL) or gradient checkpointing still hands them over is up to it")
            fix = Fix("Train with the cache on and checkpointing off, unless the model's code passes the K/V "
                      "independently of the cache", "model.config.use_cache = True  # and gradient_checkpointing=False")
        else:
            found = f"transformers {installed}" if installed else "this transformers"
            message = (f"{what}{config_note}; {found} hands them over through the KV cache, so use_cache=False "
                       f"(TRL) or gradient checkpointing gives silently wrong logits")
            fix = Fix(f"Upgrade transformers to {FIXED_IN} or newer, or keep the cache on and checkpointing off",
                      f'pip install "transformers>={FIXED_IN}"  # else: model.config.use_cache = True, '
                      f"gradient_checkpointing=False")
        yield self.finding(
            paths,
            message,
            module_class=module_class,
            severity=Severity.INFO if fixed else Severity.WARNING,
            confidence=Confidence.HIGH if shared and receivers else Confidence.MEDIUM,
            fix=fix,
            details={"num_kv_shared_layers": shared, "transformers": str(installed) if installed else None,
                     "fixed_in": str(FIXED_IN), "carries_fix": fixed, "transformers_code": native},
        )


def _receivers(ctx):
    """Attention groups without K/V projections whose class has them elsewhere in the model."""
    groups = ctx.attention_modules
    own = {g.representative.cls for g in groups if _has_kv(ctx, g.representative)}
    return [g for g in groups if g.representative.cls in own and not _has_kv(ctx, g.representative)]


def _has_kv(ctx, info) -> bool:
    return any(_KV_CHILD.match(attr) for attr in info.children)
