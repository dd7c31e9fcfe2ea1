"""What every rule is: metadata, a ``check`` over the graph, and its own examples.

A rule declares only what cannot be derived: code, name, default severity, confidence,
the tools it protects. Its docstring is its documentation (the headings in
:data:`DOC_HEADINGS`), and its ``VALID``/``INVALID`` examples are run by the test suite.
``check`` receives the lint's :class:`~archlint.facts.Facts` (:data:`LintContext`) and
yields findings; it reads facts, never another rule, and never prints, reads files or
touches the network.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..facts import Facts
from ..findings import Confidence, Finding, Fix, Severity

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


#: What ``Rule.check`` receives: the lint's inputs and its facts.
LintContext = Facts


class Rule:
    """Base class of every rule, built-in or plugin."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    severity_note: ClassVar[str] = ""  # when a finding's severity departs from the default, and why
    confidence: ClassVar[Confidence] = Confidence.HIGH
    tools: ClassVar[tuple[str, ...]] = ()
    origin: ClassVar[str] = "archlint"
    VALID: ClassVar[tuple[Example, ...]] = ()
    INVALID: ClassVar[tuple[Example, ...]] = ()
    #: True for a rule about suppressions themselves: it runs once they have been applied
    #: (``ctx.suppressions`` is set) and its findings are not suppressed.
    after_suppression: ClassVar[bool] = False
    #: The facts the lint's worker computes ahead (:mod:`archlint.facts.ahead`) that the rule
    #: reads: ``"plans"`` (``ctx.plans``, a verified fix, the training steps), ``"quantization"``.
    #: Rules reading neither run first, then the plan rules, then the quantization rules, so that
    #: the lint waits for the worker as late as it can. An ordering hint only: a rule that reads
    #: one without saying so gets it all the same, a little sooner.
    reads_ahead: ClassVar[frozenset[str]] = frozenset()

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
