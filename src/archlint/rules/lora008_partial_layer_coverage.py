"""LORA008 partial-layer-coverage."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Fix, Severity, star_indices
from ..lora.layers import is_linear_like
from ..lora.recipes import label
from ..lora.verify import Candidate, reaches_all, verified_fix
from ..structure import unique_suffix
from .base import Example, Rule


class PartialLayerCoverage(Rule):
    """A target name that reaches only some of the repeated blocks, or that PEFT re-routes
    away from the plain Linears carrying it.

    What it does:
        For the plan (or each common recipe) and each `target_modules` entry, counts the
        repeated blocks (decoder/encoder layers) of each `ModuleList` the entry reaches,
        and flags entries present in only some of them (Gemma-4's KV-shared layers have
        no `k_proj`/`v_proj`; hybrid models have attention in one layer of four).
        Also flags the names PEFT's transformers-v5 MoE conversion re-routes to fused
        expert parameters (`gate_proj` -> `experts.gate_up_proj`) when plain `nn.Linear`
        modules of that name exist (dense layers, shared experts): PEFT leaves them out.

    Why is this bad:
        LoRA covers fewer layers than the config suggests, silently: PEFT only errors
        when *no* entry matches. With the MoE conversion, DeepSeek-V3's first dense
        layers and every shared expert keep frozen MLPs under a "seven names" config.

    Example:
        `k_proj` on google/gemma-4-E2B-it reaches 15 of the language model's 35 layers;
        `gate_proj` on deepseek-ai/DeepSeek-V3 reaches the routed experts of layers 3-60
        but not the `nn.Linear` `gate_proj` of layers 0-2 or of the shared experts.

    Use instead:
        Layers that reuse another layer's K/V have no `k_proj`/`v_proj` to adapt: that is
        reported as info, with nothing to change. Otherwise read the per-layer coverage
        and decide; for the re-routed names, target the
        plain Linears' weights through `target_parameters` (the fix is verified with PEFT).

    References:
        https://github.com/huggingface/peft/issues/3658,
        peft/utils/transformers_weight_conversion.py `_convert_peft_config_moe`
    """

    code = "LORA008"
    name = "partial-layer-coverage"
    severity = Severity.WARNING
    reads_ahead = frozenset({"plans"})
    severity_note = "info when the blocks it misses reuse another layer's K/V"
    tools = ("peft",)

    VALID = (Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "o_proj"]}),)
    INVALID = (
        Example("fixtures/zoo/plans.py:MoeDecoder", plan={"target_modules": ["q_proj", "k_proj"]},
                paths=("layers.0.self_attn.k_proj", "layers.1.self_attn.k_proj")),
    )

    def check(self, ctx):
        yield from self._coverage(ctx)
        yield from self._rerouted(ctx)

    def _coverage(self, ctx):
        blocks_of = ctx.graph.blocks
        found = defaultdict(lambda: {"recipes": [], "paths": None, "reached": 0, "total": 0, "missing": None})
        for evaluation in ctx.plans.evaluations:
            for entry in evaluation.entries:
                by_list = defaultdict(set)
                for p in entry.modules:
                    block = blocks_of.block_of(p)
                    if block is not None:
                        by_list[blocks_of.list_of(block)].add(p)
                for container, paths in by_list.items():
                    length = len(blocks_of.lists[container])
                    blocks = {blocks_of.block_of(p) for p in paths}
                    if len(blocks) >= length:
                        continue
                    key = (entry.entry, container)
                    record = found[key]
                    record["recipes"].append(label(evaluation.plan))
                    record["paths"] = sorted(paths)
                    record["reached"], record["total"] = len(blocks), length
                    record["missing"] = sorted(int(b.rsplit(".", 1)[1]) for b, c in blocks_of.outer.items()
                                               if c == container and b not in blocks and b.rsplit(".", 1)[1].isdigit())
        for (entry, container), r in sorted(found.items()):
            reach = (f"`{entry}` reaches {r['reached']}/{r['total']} blocks of `{container}` "
                     f"({', '.join(r['recipes'])})")
            details = {"entry": entry, "container": container, "reached": r["reached"], "total": r["total"],
                       "missing_blocks": r["missing"], "recipes": r["recipes"]}
            shared = _kv_shared(ctx, container, r["paths"][0], r["missing"])
            if shared is not None:
                yield self.finding(
                    r["paths"],
                    f"{reach}: blocks {_ranges(r['missing'])} have no key/value projections of their own, they "
                    f"reuse an earlier layer's K/V{shared}; nothing to change, their attention is adapted "
                    f"through the projections they do have",
                    module_class=ctx.graph.info(r["paths"][0]).class_name, severity=Severity.INFO,
                    details={**details, "kv_shared": True},
                )
                continue
            first = f"{container}.{r['missing'][0]}" if r["missing"] else container
            yield self.finding(
                r["paths"], f"{reach}; blocks without it: {_ranges(r['missing'])}",
                module_class=ctx.graph.info(r["paths"][0]).class_name,
                fix=Fix("Nothing to change if those blocks lack it by design (hybrid layers); otherwise add "
                        "the names their projections carry",
                        f"[n for n, _ in model.named_modules() if n.startswith('{first}.')]  # what they have"),
                details=details,
            )

    def _rerouted(self, ctx):
        universe = [f"{i.path}.{n}" for i in ctx.graph for n in i.parameters]
        found = {}
        for evaluation in ctx.plans.evaluations:
            outcome = evaluation.outcome
            # a Linear whose own weight PEFT wraps as a target parameter (the router `gate` re-routed to
            # `gate.weight`) is adapted too, through a ParamWrapper
            wrapped = set(outcome.modules) | {p.rsplit(".", 1)[0] for p in outcome.parameters}
            for name, param in sorted(outcome.rerouted.items()):
                leaf = name.rsplit(".", 1)[-1]
                skipped = tuple(i.path for i in ctx.graph if i.leaf_name == leaf and is_linear_like(i.module)
                                and i.path not in wrapped)
                if skipped:
                    found.setdefault((leaf, param, skipped), []).append(evaluation)
        fixes = []
        for (leaf, param, skipped), evaluations in found.items():
            weights = [f"{p}.weight" for p in skipped]
            plan = evaluations[0].plan.to_mapping()
            wanted = set(plan.get("target_parameters") or []) | set(_suffixes(weights, universe))
            fixes.append((leaf, param, skipped, evaluations, weights, {**plan, "target_parameters": sorted(wanted)}))
        ctx.plans.outcomes_of(fixed for *_, fixed in fixes)  # the fixes' training steps together
        for leaf, param, skipped, evaluations, weights, fixed in fixes:
            labels = [label(e.plan) for e in evaluations]
            title = f"Adapt the plain `{leaf}` Linears through target_parameters"
            fix = verified_fix(ctx.plans.outcome_of, title, [Candidate(
                "target_parameters=[" + ", ".join(f'"{e}"' for e in fixed["target_parameters"]) + "]", fixed,
                f"with {labels[0]}", expect=reaches_all(weights))])
            yield self.finding(
                skipped,
                f"PEFT re-routes `{leaf}` to the fused expert parameter `{param}` ({', '.join(labels)}; its "
                f"transformers-v5 MoE conversion for {ctx.built.model_type}), so these {len(skipped)} plain "
                f"nn.Linear `{leaf}` are NOT adapted",
                module_class=ctx.graph.info(skipped[0]).class_name,
                fix=fix,
                details={"entry": leaf, "rerouted_to": param, "recipes": labels},
            )


KV_NAMES = ("k_proj", "v_proj", "key", "value", "k_norm", "v_norm", "kv_proj")


def _kv_shared(ctx, container: str, reached: str, missing: list[int]) -> str | None:
    """When the blocks an entry misses are attention layers that reuse another layer's K/V
    (Gemma-4's ``num_kv_shared_layers``): the config's note (may be empty); else None.

    Read from the model: in each missing block, the module that holds the entry elsewhere
    exists and has no key/value projection, while it keeps its query projection."""
    if not missing or reached.rsplit(".", 1)[-1] not in KV_NAMES:
        return None
    rest = reached[len(container) + 1:].split(".", 1)
    if len(rest) != 2 or "." not in rest[1]:
        return None
    holder = rest[1].rsplit(".", 1)[0]  # e.g. self_attn
    for index in missing:
        path = f"{container}.{index}.{holder}"
        if path not in ctx.graph.nx:
            return None
        children = set(ctx.graph.info(path).children)
        if children & set(KV_NAMES[:4]) or not children & {"q_proj", "query"}:
            return None
    shared = max((v for _, v in ctx.config_values("num_kv_shared_layers") if isinstance(v, int)), default=0)
    return f" (num_kv_shared_layers={shared})" if shared == len(missing) else ""


def _suffixes(weights: list[str], universe: list[str]) -> list[str]:
    """The shortest target_parameters entries reaching exactly these weights, per pattern."""
    groups = defaultdict(list)
    for w in weights:
        groups[star_indices(w)].append(w)
    out = []
    for paths in groups.values():
        entry = unique_suffix(paths, universe)
        if any(not (p == entry or p.endswith("." + entry)) for p in paths) or entry in out:
            out.extend(p for p in paths if p not in out)
        else:
            out.append(entry)
    return out


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "—"
    out, start, prev = [], numbers[0], numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if n is not None:
            start = prev = n
    return ", ".join(out)
