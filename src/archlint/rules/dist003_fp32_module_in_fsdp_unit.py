"""DIST003 fp32-module-in-fsdp-unit."""

from __future__ import annotations

from collections import defaultdict

import torch

from ..findings import Fix, Severity
from .base import Example, Rule


class Fp32ModuleInFsdpUnit(Rule):
    """Parameters transformers keeps in fp32 inside an FSDP unit of low-precision parameters.

    What it does:
        Reads the parameters transformers loads in fp32 whatever the load dtype (its
        own dtype plan, `_get_dtype_plan`, built from `_keep_in_fp32_modules_strict`,
        and from `_keep_in_fp32_modules` under fp16) and the FSDP unit each one lands
        in: the nearest enclosing module whose class is in `_no_split_modules` (what
        FSDP's transformer auto-wrap wraps), else the root. Flags the units that mix
        them with parameters of the load dtype.

    Why is this bad:
        FSDP's mixed-precision policy casts every parameter of a unit to its
        `param_dtype`: the fp32 router or norm silently computes in bf16, which is what
        the model asked not to happen. FSDP1 flat parameters refuse mixed dtypes
        outright ("Must flatten tensors with uniform dtype").

    Example:
        DeepSeek-V2-Lite keeps `mlp.gate.weight` in fp32 inside `DeepseekV2DecoderLayer`.

    Use instead:
        Shard the fp32 module as its own unit with a float32 policy before its block
        (FSDP2: `fully_shard(module, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32))`),
        or keep it out of the cast.

    References:
        https://github.com/hiyouga/LlamaFactory/issues/7993, https://github.com/axolotl-ai-cloud/axolotl/pull/493
    """

    code = "DIST003"
    name = "fp32-module-in-fsdp-unit"
    severity = Severity.WARNING
    tools = ("fsdp", "accelerate")

    VALID = (Example("fixtures/configs/meta-llama__Llama-3.1-8B"),)
    INVALID = (
        Example("fixtures/configs/deepseek-ai__DeepSeek-V2-Lite",
                paths=tuple(f"model.layers.{i}.mlp.gate" for i in range(1, 27)), fix="MixedPrecisionPolicy"),
    )

    def check(self, ctx):
        from transformers import PreTrainedModel
        from transformers.core_model_loading import build_glob_alternation

        root = ctx.graph.root
        if not isinstance(root, PreTrainedModel):
            return
        dtype = _model_dtype(root)
        plan = root._get_dtype_plan(dtype)
        if not plan:
            return
        pattern, _, _ = build_glob_alternation(list(plan))
        units = set(getattr(root, "_no_split_modules", None) or ())
        fp32: dict[str, list[str]] = defaultdict(list)  # unit path -> fp32 parameter names
        others: dict[str, int] = defaultdict(int)
        for name, _ in root.named_parameters():
            unit = _unit_of(ctx, name.rpartition(".")[0], units)
            if pattern.search(name) and plan[_first_match(plan, pattern, name)] != dtype:
                fp32[unit].append(name)
            else:
                others[unit] += 1
        mixed = {u: names for u, names in fp32.items() if others.get(u)}
        if not mixed:
            return
        owners = sorted({n.rpartition(".")[0] for names in mixed.values() for n in names})
        owners = [o for o in owners if o in ctx.graph.nx.nodes]
        unit_classes = sorted({ctx.graph.info(u).class_name for u in mixed if u in ctx.graph.nx.nodes})
        owner_classes = sorted({ctx.graph.info(o).class_name for o in owners})
        yield self.finding(
            owners,
            f"{len(owners)} module(s) transformers keeps in fp32 share an FSDP unit ({', '.join(unit_classes)}) "
            f"with {dtype} parameters: a mixed-precision policy casts them, FSDP1 refuses to flatten them",
            module_class=", ".join(owner_classes),
            fix=Fix("Give the fp32 modules their own FSDP unit in float32",
                    "from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard\n"
                    f"for name, module in model.named_modules():\n"
                    f"    if type(module).__name__ in {owner_classes!r} and name in FP32_MODULES:\n"
                    "        fully_shard(module, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32))\n"
                    f"# FP32_MODULES: the {len(owners)} paths of this finding; "
                    f"then shard {', '.join(unit_classes)} as usual"),
            details={"units": sorted(mixed), "fp32_parameters": sorted(n for names in mixed.values() for n in names),
                     "dtype_plan": {k: str(v) for k, v in sorted(plan.items())}},
        )


def _model_dtype(root) -> torch.dtype:
    """The model's dtype as transformers reads it (its first floating parameter); bf16 for a
    model whose ``dtype`` property finds none (it raises StopIteration then)."""
    try:
        dtype = root.dtype
    except (StopIteration, AttributeError):
        return torch.bfloat16
    return dtype if isinstance(dtype, torch.dtype) else torch.bfloat16


def _unit_of(ctx, path: str, units: set[str]) -> str:
    """The nearest enclosing module whose class FSDP's transformer auto-wrap wraps, else the root."""
    parts = path.split(".") if path else []
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in ctx.graph.nx.nodes and ctx.graph.info(prefix).class_name in units:
            return prefix
    return ""


def _first_match(plan: dict, pattern, name: str):
    from transformers.core_model_loading import build_glob_alternation

    _, by_group, _ = build_glob_alternation(list(plan))
    return by_group[pattern.search(name).lastgroup]
