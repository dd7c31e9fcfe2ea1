"""Third-party rules, found through the ``archlint.rules`` entry-point group.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."archlint.rules"]
    pad = "archlint_plugin_example.rules:UnpaddedVocab"     # one Rule subclass
    more = "archlint_plugin_example.more_rules"             # or a module: all its Rule subclasses

Plugin rules use the same :class:`~archlint.rules.base.Rule` base class and metadata as
the built-in ones and go through the same selection (``--select``/``--ignore``, config).
A plugin that cannot be used -- it raises on import, names something that is not a
rule, lacks metadata, or reuses a code or name already taken -- is reported on stderr
(through the ``archlint`` logger) with its entry-point and distribution names, and
skipped: one broken plugin never stops a run.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from ..errors import one_line
from ..findings import Confidence, Severity
from .base import CODE_PATTERN, NAME_PATTERN, Rule

GROUP = "archlint.rules"
log = logging.getLogger("archlint.plugins")


@dataclass(frozen=True)
class PluginProblem:
    """Why one entry point was skipped."""

    entry_point: str
    distribution: str
    reason: str

    def __str__(self) -> str:
        return f"archlint: plugin {self.entry_point!r} from {self.distribution} skipped: {self.reason}"


def load_plugin_rules(taken: Iterable[type[Rule]]) -> tuple[list[type[Rule]], list[PluginProblem]]:
    """The rules of every installed plugin whose codes and names clash with nothing in ``taken``.

    Each problem is also logged (a warning: shown on stderr unless logging is configured
    otherwise). Entry points are read in a stable order (distribution, then name).
    """
    codes = {r.code: f"{r.origin}" for r in taken}
    names = {r.name: r.code for r in taken}
    rules: list[type[Rule]] = []
    problems: list[PluginProblem] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (_dist_name(e), e.name)):
        dist = _dist_name(ep)
        try:
            found = _rules_of(ep)
        except Exception as e:  # any import-time failure of third-party code: skip, say why
            problems.append(PluginProblem(ep.name, dist, f"import failed: {one_line(e)}"))
            continue
        if isinstance(found, str):
            problems.append(PluginProblem(ep.name, dist, found))
            continue
        for rule in found:
            problem = _invalid(rule) or _clash(rule, codes, names)
            if problem:
                problems.append(PluginProblem(ep.name, dist, problem))
                continue
            rule.origin = dist  # what `archlint rules` and the rule pages show
            codes[rule.code] = dist
            names[rule.name] = rule.code
            rules.append(rule)
    for problem in problems:
        log.warning("%s", problem)
    return rules, problems


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "an unknown distribution"


def _rules_of(ep: EntryPoint) -> list[type[Rule]] | str:
    """The rule classes an entry point names, or why it names none."""
    obj = ep.load()
    if isinstance(obj, ModuleType):
        found = [v for v in vars(obj).values()
                 if inspect.isclass(v) and issubclass(v, Rule) and v.__module__ == obj.__name__ and hasattr(v, "code")]
        return found or f"module {obj.__name__} defines no archlint Rule subclass"
    if inspect.isclass(obj) and issubclass(obj, Rule):
        return [obj]
    return f"{ep.value} is not an archlint Rule subclass (got {type(obj).__name__})"


def _invalid(rule: type[Rule]) -> str | None:
    """What is missing from a rule's metadata, if anything."""
    label = rule.__qualname__
    code, name = getattr(rule, "code", None), getattr(rule, "name", None)
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        return f"{label}: code {code!r} does not look like PREFIX000 (2-5 capitals, 3 digits)"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return f"{code}: name {name!r} is not kebab-case"
    if not isinstance(getattr(rule, "severity", None), Severity):
        return f"{code}: severity must be an archlint Severity"
    if not isinstance(rule.confidence, Confidence):
        return f"{code}: confidence must be an archlint Confidence"
    if rule.check is Rule.check:
        return f"{code}: does not implement check()"
    if not rule.summary():
        return f"{code}: has no docstring (its first line is the rule's summary)"
    return None


def _clash(rule: type[Rule], codes: dict[str, str], names: dict[str, str]) -> str | None:
    if rule.code in codes:
        return f"code {rule.code} is already used by {codes[rule.code]}"
    if rule.name in names:
        return f"name {rule.name!r} is already used by {names[rule.name]}"
    return None
