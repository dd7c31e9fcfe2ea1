"""What every rule is: metadata, a ``check`` over the graph, and its own examples.

A rule declares only what cannot be derived (STYLE.md §2): code, name, default
severity, confidence, the tools it protects. Its docstring is its documentation (the
headings in :data:`DOC_HEADINGS`), and its ``VALID``/``INVALID`` examples are run by the
test suite. ``check`` receives a read-only :class:`LintContext` and yields findings; it
never prints, reads files or touches the network (DESIGN decision 5).
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..findings import Confidence, Finding, Fix, Severity

if TYPE_CHECKING:
    from ..build import BuiltModel
    from ..graph import ModuleGraph

DOC_HEADINGS = ("What it does", "Why is this bad", "Example", "Use instead", "References")
CODE_PATTERN = re.compile(r"^[A-Z]{2,5}[0-9]{3}$")
NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Example:
    """A target the rule is run on in the test suite.

    ``target`` is any archlint target (usually ``fixtures/zoo/FILE.py:NAME`` or a bundled
    real config). For INVALID examples, ``paths`` are exactly the module paths the rule
    must report, and ``fix`` a string the fix text must contain.
    """

    target: str
    paths: Sequence[str] = ()
    fix: str | None = None
    note: str = ""
    plan: Mapping[str, Any] | None = None  # a LoRA plan (LoraConfig keys) to lint with, for plan rules
    quantization: str | None = None  # a --quantization value (preset or fixtures/ JSON file) to lint with


@dataclass
class LintContext:
    """What a rule may look at: the graph, the built model and its config."""

    graph: ModuleGraph
    built: BuiltModel
    config: Any = None  # transformers.PretrainedConfig, or None for a plain nn.Module
    plan: Any = None  # the user's archlint.plan.Plan, or None (then the common recipes are evaluated)
    quantization: Any = None  # archlint.quantize.QuantizationPreview, when asked for or shipped in the config
    checkpoint: Any = None  # archlint.checkpoint.CheckpointAgreement, when a checkpoint's headers were read
    cache: dict[str, Any] = field(default_factory=dict)  # shared analyses, computed once
    timings: dict[str, float] = field(default_factory=dict)  # seconds per costly phase (--debug)

    def config_values(self, *keys: str) -> list[tuple[str, Any]]:
        """``(dotted.key, value)`` for each key set in the config or any sub-config."""
        found = []
        for prefix, cfg in _walk_configs(self.config):
            for key in keys:
                value = _raw_attr(cfg, key)
                if value is not None:
                    found.append((f"{prefix}{key}", value))
        return found

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the time spent inside the block to ``timings[phase]`` (e.g. ``"probe"``)."""
        clock = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - clock

    def memo(self, key: str, compute):
        """An analysis several rules share, computed once per lint."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Rule:
    """Base class of every rule, built-in or plugin."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    confidence: ClassVar[Confidence] = Confidence.HIGH
    tools: ClassVar[tuple[str, ...]] = ()
    origin: ClassVar[str] = "archlint"
    VALID: ClassVar[tuple[Example, ...]] = ()
    INVALID: ClassVar[tuple[Example, ...]] = ()

    def check(self, ctx: LintContext) -> Iterable[Finding]:
        raise NotImplementedError

    # -- derived metadata ---------------------------------------------------------

    @classmethod
    def doc(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        return cls.doc().split("\n", 1)[0].strip()

    @classmethod
    def sections(cls) -> dict[str, str]:
        """The docstring split by its ``Heading:`` lines (Ruff's layout)."""
        out: dict[str, str] = {}
        current = None
        for line in cls.doc().splitlines()[1:]:
            heading = line.rstrip(":").strip()
            if line.endswith(":") and heading in DOC_HEADINGS:
                current = heading
                out[current] = ""
            elif current:
                out[current] += line + "\n"
        return {k: v.strip("\n") for k, v in out.items()}

    # -- helpers for check() ------------------------------------------------------

    def finding(
        self,
        paths: Iterable[str],
        message: str,
        *,
        module_class: str,
        fix: Fix | None = None,
        details: dict[str, Any] | None = None,
        severity: Severity | None = None,
        confidence: Confidence | None = None,
        pattern: str = "",
    ) -> Finding:
        return Finding(
            code=self.code,
            name=self.name,
            severity=severity or self.severity,
            confidence=confidence or self.confidence,
            message=message,
            module_class=module_class,
            paths=tuple(paths),
            fix=fix,
            details=details or {},
            pattern=pattern,
        )


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
