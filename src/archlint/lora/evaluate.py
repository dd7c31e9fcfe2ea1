"""Evaluate a plan on a meta model: PEFT's verdict, what each entry reaches, what is wrapped.

The verdict, wrapped modules/parameters and trainable count come from the installed
PEFT (:mod:`.oracle`) or, without PEFT, from :mod:`.reimplementation`. What each entry
reaches is asked per entry: ``get_peft_model`` only reports the union of all entries
(and raises on the first module it cannot wrap), a user asks per entry. Each entry is
matched alone, with the plan's ``exclude_modules``/``layers_to_transform``/
``modules_to_save``, by PEFT's own matcher when PEFT is installed, else by
:mod:`.targets`. Names PEFT's MoE conversion turns into expert parameters are reported
as the parameters they reach. The layer coverage is read from the model's repeated
blocks (:attr:`archlint.graph.ModuleGraph.blocks`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace

from torch import nn

from ..findings import star_indices
from ..graph import ModuleGraph, RepeatedBlocks
from ..report import Engine, Verdict
from . import reimplementation
from .oracle import (
    Outcome,
    conversion_table,
    moe_reroutes,
    peft_available,
    peft_entry_matcher,
    peft_version,
    run_peft,
)
from .plan import ALL_LINEAR, Plan
from .recipes import peft_default_targets
from .targets import parameters_reached
from .training_step import StepCheck


@dataclass(frozen=True)
class EntryResult:
    entry: str
    modules: tuple[str, ...]
    parameters: tuple[str, ...]
    classes: tuple[str, ...]
    towers: tuple[str, ...]
    layers_reached: int
    layers_total: int
    rerouted_to: str | None = None  # the expert parameter PEFT's MoE conversion turned this name into

    @property
    def matches(self) -> int:
        return len(self.modules) + len(self.parameters)



@dataclass(frozen=True)
class PlanEvaluation:
    plan: Plan
    outcome: Outcome
    entries: tuple[EntryResult, ...]
    notes: tuple[str, ...] = ()
    peft_version: str | None = None
    step: StepCheck | None = None  # the training step of the adapted model, when PEFT injected it

    @property
    def ok(self) -> bool:
        """PEFT injects the plan and the adapted model's training step runs clean."""
        return self.outcome.ok and (self.step is None or self.step.ok)

    @property
    def engine_label(self) -> str:
        """Who answered, for people: the installed PEFT, or the reimplementation."""
        if self.outcome.engine == Engine.PEFT:
            return f"PEFT {self.peft_version} on the meta model"
        return f"archlint's reimplementation of PEFT {reimplementation.REIMPLEMENTED_VERSION} (PEFT not installed)"

    @property
    def verdict(self) -> Verdict:
        return Verdict.OK if self.ok else Verdict.ERROR

    @property
    def checked(self) -> tuple[str, ...]:
        """The stages that ran clean: inject (by PEFT), forward and backward (the step)."""
        if not self.outcome.ok or self.outcome.engine != Engine.PEFT:
            return ()
        return self.step.checked if self.step is not None else ("inject",)

    @property
    def error(self) -> dict[str, str | None] | None:
        """What failed, at which stage and in which module: PEFT's exception at inject, or
        the training step's."""
        if not self.outcome.ok:
            return {**self.outcome.error, "stage": "inject", "module": self.outcome.error_module}
        return self.step.error_dict() if self.step is not None else None


@dataclass
class ModelIndex:
    """What the evaluation reads of one model for every plan: classes, towers, blocks,
    and what each one-entry plan reaches (:func:`entry_matches`)."""

    model: nn.Module
    classes: dict[str, str]
    towers: dict[str, str]
    blocks: RepeatedBlocks
    parameter_paths: tuple[str, ...]
    matches: dict = field(default_factory=dict)

    @classmethod
    def of(cls, graph: ModuleGraph) -> ModelIndex:
        return cls(graph.root, {i.path: i.class_name for i in graph}, {i.path: i.tower for i in graph}, graph.blocks,
                   tuple(f"{i.path}.{n}" if i.path else n for i in graph for n in i.parameters))


def evaluate(model: nn.Module, plan: Plan, *, index: ModelIndex | None = None, engine: Engine | None = None,
             outcomes: dict | None = None) -> PlanEvaluation:
    """Evaluate ``plan`` on ``model`` (left untouched; PEFT works on a copy). ``outcomes``: see :func:`predict`."""
    index = index or ModelIndex.of(ModuleGraph(model))
    outcome = predict(model, plan, engine=engine, outcomes=outcomes)
    entries = tuple(_entry(index, plan, e, outcome.rerouted) for e in plan.entries)
    return PlanEvaluation(plan, outcome, entries, _notes(model, plan, outcome), peft_version())


def predict(model: nn.Module, plan: Plan, *, engine: Engine | None = None, outcomes: dict | None = None) -> Outcome:
    """PEFT's outcome: from PEFT itself, or from the reimplementation (``engine=Engine.REIMPLEMENTATION``
    or PEFT missing).

    ``outcomes`` (one dict per model, e.g. per lint) remembers each outcome under what PEFT is
    given, ``LoraConfig``'s keyword arguments: a plan whose arguments equal an earlier one's (a
    suggested fix that is a recipe, a user plan that is a fix) is not run again. Plans that
    merely adapt the same modules (the seven standard names and ``all-linear`` on Llama) are
    different inputs; PEFT runs once for them when :func:`same_wrapping` proves the outcome
    equal, and on the model's shrunk copy when :func:`on_shrunk_copy` can."""
    use_peft = engine != Engine.REIMPLEMENTATION and peft_available()
    key = ("peft" if use_peft else "reimplementation", peft_input(plan))
    if outcomes is not None and key in outcomes:
        return outcomes[key]
    if use_peft:
        whole = wrapping = None
        if outcomes is not None:
            whole = reimplementation.run(model, plan, default_targets=_default_targets(model))
            wrapping = same_wrapping(model, plan, whole)
        earlier = outcomes.get(wrapping) if wrapping is not None else None
        if earlier is not None:  # the same wrapping: PEFT's answer again, with this plan's own re-routing
            outcome = replace(earlier, rerouted=moe_reroutes(model, plan))
        else:
            outcome = on_shrunk_copy(model, plan, outcomes, whole) or run_peft(model, plan)
            if wrapping is not None and outcome.ok and (outcome.modules, outcome.parameters) == wrapping[1:3]:
                outcomes[wrapping] = outcome
    else:
        outcome = reimplementation.run(model, plan, default_targets=_default_targets(model))
    if outcomes is not None:
        outcomes[key] = outcome
    return outcome


#: Key of an ``outcomes`` dict holding a callable that returns the model's shrunk copy
#: (:class:`archlint.shrink.ShrunkModel`, one layer per distinct block structure) or None.
SHRUNK_COPY = "shrunk copy"
#: ``outcomes[(ADAPTED_COPY, peft_input(plan))]``: ``(shrunk copy, PEFT's adapted copy of it)``
#: from the run that answered for ``plan``, left for the plan's training step to take
#: (:meth:`archlint.facts.plans.PlanFacts.step_of`) instead of injecting the same plan again.
ADAPTED_COPY = "adapted shrunk copy"
_INDEX_SEGMENT = re.compile(r"(^|\.)\d+(\.|$)")


def on_shrunk_copy(model: nn.Module, plan: Plan, outcomes: dict | None,
                   whole: Outcome | None = None) -> Outcome | None:
    """PEFT's outcome on ``model`` from a PEFT run on its shrunk copy, when that provably
    gives the same answer; else None (the caller runs PEFT on the model itself).

    A plan that names no layer index (plain names, ``all-linear`` or PEFT's defaults, no
    ``layers_to_transform``, no per-module patterns) decides the same for every layer of one
    structure, and the shrunk copy keeps a layer of each structure. PEFT runs there; when
    the reimplementation gives exactly PEFT's answer on the copy (accepted, the same
    modules, parameters and trainable count), its answer on the whole model is PEFT's too,
    with the re-routing of MoE names asked of PEFT's own conversion. A PEFT error, or any
    difference, falls back to the whole model: the cost of a PEFT run then grows with depth
    again, the answer never changes."""
    make = outcomes.get(SHRUNK_COPY) if outcomes is not None else None
    if make is None or not _names_no_layer(plan, model, lambda regex: _regex_ignores_layers(regex, model, make())):
        return None
    shrunk = make()
    if shrunk is None:
        return None
    defaults = _default_targets(model)
    whole = whole or reimplementation.run(model, plan, default_targets=defaults)
    small = reimplementation.run(shrunk.module, plan, default_targets=defaults)
    if not (whole.ok and small.ok):
        return None
    adapted: list = []
    ran = run_peft(shrunk.module, plan, keep=adapted)
    if not ran.ok or (ran.modules, ran.parameters, ran.trainable) != (small.modules, small.parameters, small.trainable):
        return None
    outcomes[(ADAPTED_COPY, peft_input(plan))] = (shrunk.module, adapted[0])
    return Outcome(True, modules=whole.modules, parameters=whole.parameters, trainable=whole.trainable,
                   rerouted=moe_reroutes(model, plan))


def _names_no_layer(plan: Plan, model: nn.Module, regex_ok=lambda regex: False) -> bool:
    """True when nothing in ``plan`` can tell one layer of a structure from another: names
    without a numeric segment (PEFT's defaults by the names they stand for on this model),
    ``all-linear`` (every linear layer, whose classes the shrunk copy all keeps), a regex
    only where ``regex_ok`` says it decides alike for every layer, no ``layers_to_transform``,
    no per-module patterns."""
    kwargs = plan.lora_kwargs()
    if kwargs.get("layers_to_transform") is not None or kwargs.get("layers_pattern") is not None:
        return False
    if kwargs.get("target_modules") == ALL_LINEAR:
        kwargs.pop("target_modules")
    elif kwargs.get("target_modules") is None:
        kwargs["target_modules"] = _default_targets(model)
    for key in ("target_modules", "exclude_modules", "target_parameters", "modules_to_save"):
        value = kwargs.pop(key, None)
        if value is None:
            continue
        if isinstance(value, str) and key in ("target_modules", "exclude_modules") and regex_ok(value):
            continue
        if isinstance(value, str) or any(_INDEX_SEGMENT.search(str(name)) for name in value):
            return False  # a regex can name indices
    return all(v is None or isinstance(v, (bool, int, float, str)) for v in kwargs.values())


def _regex_ignores_layers(regex: str, model: nn.Module, shrunk) -> bool:
    """Whether PEFT's full match of ``regex`` (a string ``target_modules``/``exclude_modules``)
    decides the same on the shrunk copy as on the model, checked path by path rather than
    read from the pattern: on the model, every path with the same indices starred
    (``model.layers.*.mlp.up_proj``) matches alike, and each path of the copy matches exactly
    when the model's path it stands for (:meth:`archlint.shrink.ShrunkModel.original_path`)
    does. Then the copy holds every (structure, match) pair the model has."""
    if shrunk is None:
        return False
    try:
        pattern = re.compile(regex)
    except re.error:
        return False  # PEFT's error is the answer: asked of the model itself
    decided: dict[str, bool] = {}
    for path, _ in model.named_modules():
        if decided.setdefault(star_indices(path), pattern.fullmatch(path) is not None) != (
                pattern.fullmatch(path) is not None):
            return False
    for path, _ in shrunk.module.named_modules():
        original = shrunk.original_path(path)
        if decided.get(star_indices(original)) != (pattern.fullmatch(path) is not None):
            return False
    return True


#: LoraConfig arguments that only choose what is wrapped.
_SELECTORS = ("target_modules", "exclude_modules", "target_parameters")


def same_wrapping(model: nn.Module, plan: Plan, predicted: Outcome | None = None) -> tuple | None:
    """A key under which plans share PEFT's outcome: the modules and parameters the plan
    wraps (by the reimplementation, which agrees with PEFT on every model type tested), and
    every other ``LoraConfig`` argument. ``get_peft_model`` wraps exactly the modules and
    parameters its matching selects (after its MoE conversion) and nothing else in it
    depends on how they were named, so two plans with one key wrap the same modules with the
    same layers and train the same parameters; only the re-routing of the plan's own names
    differs, and :func:`predict` asks PEFT's conversion for it. Only a successful PEFT run
    whose result equals the prediction is stored under the key; None when the prediction is
    an error (whose message may name the plan's entries)."""
    predicted = predicted or reimplementation.run(model, plan, default_targets=_default_targets(model))
    if not predicted.ok:
        return None
    others = sorted((k, repr(v)) for k, v in plan.lora_kwargs().items() if k not in _SELECTORS)
    return ("wraps", predicted.modules, predicted.parameters, repr(others))


def _default_targets(model: nn.Module):
    return peft_default_targets(getattr(getattr(model, "config", None), "model_type", None))


def peft_input(plan: Plan) -> str:
    """What PEFT is given for ``plan`` (``LoraConfig``'s keyword arguments), as a key: the
    source label and the order of keys play no part, the order and type of values do."""
    return repr(sorted((k, repr(v)) for k, v in plan.lora_kwargs().items()))


def _entry(index: ModelIndex, plan: Plan, entry: str, rerouted: dict[str, str]) -> EntryResult:
    found = entry_matches(index, plan, entry, rerouted)
    owners = [p.rpartition(".")[0] for p in found.parameters]
    paths = [*found.modules, *owners]
    reached, total = _coverage(index, paths)
    return EntryResult(
        entry=entry,
        modules=found.modules,
        parameters=found.parameters,
        classes=tuple(sorted({index.classes[p] for p in paths})),
        towers=tuple(sorted({index.towers.get(p, "") for p in paths})),
        layers_reached=reached,
        layers_total=total,
        rerouted_to=rerouted.get(entry) if not isinstance(plan.target_modules, str) else None,
    )


@dataclass(frozen=True)
class EntryMatch:
    modules: tuple[str, ...]  # module paths the entry matches (before PEFT's type dispatch)
    parameters: tuple[str, ...]  # parameter paths it reaches through the MoE conversion or target_parameters


def entry_matches(index: ModelIndex, plan: Plan, entry: str, rerouted: dict[str, str]) -> EntryMatch:
    """What ``entry`` of ``plan.target_modules`` reaches on the indexed model. Each answer is
    kept under the one-entry plan it was computed from, so that an entry several plans
    share with the same other keys (``q_proj`` in q,k,v,o and in the seven standard
    names) is matched once."""
    single = dataclasses.replace(plan, target_modules=entry if isinstance(plan.target_modules, str) else (entry,),
                                 target_parameters=())
    reroute = rerouted.get(entry) if not isinstance(plan.target_modules, str) else None
    key = (peft_input(single), reroute)
    if key in index.matches:
        return index.matches[key]
    if reroute is not None:
        found = EntryMatch((), parameters_reached(index.parameter_paths, [reroute]))
    else:
        model = index.model
        if peft_available():
            matcher, extra = peft_entry_matcher(model, single)
        else:
            matcher, extra = reimplementation.entry_matcher(model, single)
        if _names_no_index(single):
            matcher = _once_per_pattern(matcher)
        modules = tuple(k for k in index.classes if k and matcher(k))
        found = EntryMatch(modules, parameters_reached(index.parameter_paths, extra) if extra else ())
    index.matches[key] = found
    return found


def _names_no_index(plan: Plan) -> bool:
    """Plain names without a numeric segment, no regex, no ``layers_to_transform``: PEFT's
    matching then answers alike for two paths that differ only in their numeric segments
    (``layers.3.mlp.up_proj`` and ``layers.17.mlp.up_proj``)."""
    kwargs = plan.lora_kwargs()
    if kwargs.get("layers_to_transform") is not None or kwargs.get("layers_pattern") is not None:
        return False
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, str) or any(_INDEX_SEGMENT.search(str(n)) for n in value)):
            return False
    return True


def _once_per_pattern(matcher):
    """``matcher`` asked once per path pattern (numeric segments starred), so that a
    model's repeated layers cost one question each, whatever the depth."""
    seen: dict[str, bool] = {}

    def match(key: str) -> bool:
        pattern = star_indices(key)
        if pattern not in seen:
            seen[pattern] = matcher(key)
        return seen[pattern]

    return match


def _coverage(index: ModelIndex, paths: list[str]) -> tuple[int, int]:
    """Blocks reached, and the blocks of the ModuleLists those paths sit in."""
    reached: dict[str, set[str]] = defaultdict(set)
    lengths: dict[str, int] = {}
    for p in paths:
        block = index.blocks.block_of(p)
        if block is not None:
            container = index.blocks.list_of(block)
            reached[container].add(block)
            lengths[container] = len(index.blocks.lists[container])
    return sum(len(v) for v in reached.values()), sum(lengths.values())


def _notes(model: nn.Module, plan: Plan, outcome: Outcome) -> tuple[str, ...]:
    """Why PEFT did something surprising, in words (text report)."""
    notes = []
    table = conversion_table(model) if peft_available() else {}
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if (plan.target_modules is None and not plan.target_parameters and not outcome.ok and table
            and peft_default_targets(model_type) is not None):
        notes.append(
            "PEFT's transformers-v5 MoE conversion runs before the default-target lookup and turns "
            "target_modules=None into an empty set, so PEFT's default targets for this model type are never used"
        )
    if outcome.rerouted:
        by_param = defaultdict(list)
        for name, param in sorted(outcome.rerouted.items()):
            by_param[param].append(name)
        notes.append("PEFT re-routes " + "; ".join(f"{', '.join(names)} -> parameter `{param}`"
                                                   for param, names in sorted(by_param.items()))
                     + " (its transformers-v5 MoE conversion for this model type)")
    return tuple(notes)
