"""The analysis of one lint: its inputs, its facts, and the clock that times them.

A *fact* is a property of the linted model that one or more rules read: computed in one
function, at most once per lint, on first access, and timed. :func:`fact` turns a
function ``name(facts) -> T`` into the attribute ``Facts.name``; the attribute is the
only way to reach it (there are no string keys). A fact may read other facts; the
clock then charges each phase only its own time, so the phases of ``--debug`` add up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..fork import MISSING

if TYPE_CHECKING:
    from ..build import BuiltModel
    from ..checkpoint import CheckpointSource
    from ..fork import Worker
    from ..graph import ModuleGraph
    from ..lora.plan import Plan
    from ..quantize import QuantizationRequest
    from ..suppress import Suppressions

T = TypeVar("T")


class Facts:
    """What a rule may look at: the graph, the built model, its config, the user's LoRA
    plan (None: the common recipes are evaluated), and every registered fact as an
    attribute (``ctx.repeated_blocks``, ``ctx.plans``, ``ctx.probes.norm(module)``, ...)."""

    def __init__(self, graph: ModuleGraph, built: BuiltModel, config: Any = None, plan: Plan | None = None,
                 quantization_request: QuantizationRequest | None = None,
                 checkpoint_source: CheckpointSource | None = None):
        self.graph = graph
        self.built = built
        self.config = config  # transformers.PretrainedConfig, or None for a plain nn.Module
        self.plan = plan
        self.quantization_request = quantization_request  # --quantization, or None
        self.checkpoint_source = checkpoint_source  # the checkpoint whose headers are read, or None
        self.suppressions: Suppressions | None = None  # set by the engine once suppressions are applied
        self.timings: dict[str, float] = {}  # seconds per phase, each phase's own time (--debug)
        self.worker: Worker | None = None  # computing facts ahead on the second core (facts/ahead.py)
        self._nested: list[float] = []  # per open phase: time spent in phases opened inside it

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent inside the block, less that of phases timed inside it, to
        ``timings[phase]``."""
        start = time.perf_counter()
        self._nested.append(0.0)
        try:
            yield
        finally:
            inner = self._nested.pop()
            elapsed = time.perf_counter() - start
            self.timings[phase] = self.timings.get(phase, 0.0) + elapsed - inner
            if self._nested:
                self._nested[-1] += elapsed

    def ahead(self, name: str) -> Any:
        """The value the worker computed ahead for job ``name``, waiting for it;
        :data:`archlint.fork.MISSING` without a worker or when it did not deliver one."""
        return MISSING if self.worker is None else self.worker.result(name)

    def config_values(self, *keys: str) -> list[tuple[str, Any]]:
        """``(dotted.key, value)`` for each key set in the config or any sub-config."""
        found = []
        for prefix, cfg in _walk_configs(self.config):
            for key in keys:
                value = _raw_attr(cfg, key)
                if value is not None:
                    found.append((f"{prefix}{key}", value))
        return found


def fact(phase: str) -> Callable[[Callable[[Facts], T]], Callable[[Facts], T]]:
    """Register ``compute(facts)`` as the lazily computed attribute ``Facts.<its name>``,
    its time charged to ``phase`` (several facts may share one phase)."""

    def register(compute: Callable[[Facts], T]) -> Callable[[Facts], T]:
        name = compute.__name__
        if name in vars(Facts):
            raise RuntimeError(f"fact {name!r} is defined twice (or shadows a Facts attribute)")

        def get(facts: Facts) -> T:
            with facts.timed(phase):
                return compute(facts)

        get.__name__ = get.__qualname__ = name
        get.__doc__ = compute.__doc__
        prop = functools.cached_property(get)
        prop.__set_name__(Facts, name)
        setattr(Facts, name, prop)
        return compute

    return register


def _walk_configs(config, prefix: str = "", seen=None):
    if config is None:
        return
    seen = seen if seen is not None else set()
    if id(config) in seen:
        return
    seen.add(id(config))
    yield prefix, config
    for key in getattr(type(config), "sub_configs", {}) or {}:
        sub = _raw_attr(config, key)
        if sub is not None and hasattr(sub, "to_dict"):
            yield from _walk_configs(sub, f"{prefix}{key}.", seen)


def _raw_attr(config, key: str):
    """A config attribute, without transformers' per-layer ambiguity guard."""
    try:
        return getattr(config, key, None)
    except Exception:  # AmbiguousGlobalPerLayerAttributeError on heterogeneous configs
        return config.__dict__.get(key)
