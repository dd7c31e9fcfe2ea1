"""Rule discovery and selection.

Built-in rules are found by walking this package (one module per rule, no hand-kept
list); every :class:`Rule` subclass with a ``code`` is a rule. Third-party rules come
from the ``archlint.rules`` entry-point group (:mod:`.plugins`) and are selected the
same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from functools import cache

from ..errors import UsageError
from .base import Example, LintContext, Rule

__all__ = ["Example", "LintContext", "Rule", "all_rules", "builtin_rules", "get_rule", "select_rules"]


@cache
def all_rules() -> tuple[type[Rule], ...]:
    """Every rule, built-in and from installed plugins, sorted by code.

    A broken plugin is logged and left out (see :mod:`.plugins`); it never raises here.
    """
    from .plugins import load_plugin_rules

    builtin = builtin_rules()
    plugins, _ = load_plugin_rules(builtin)
    return tuple(sorted((*builtin, *plugins), key=lambda r: r.code))


@cache
def builtin_rules() -> tuple[type[Rule], ...]:
    """Every rule shipped in this package, sorted by code."""
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "plugins") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and obj.__module__ == module.__name__ and hasattr(obj, "code"):
                if obj.code in found:
                    raise RuntimeError(f"rule code {obj.code} defined twice: {found[obj.code].__module__} and {module.__name__}")
                found[obj.code] = obj
    return tuple(found[c] for c in sorted(found))


def get_rule(code_or_name: str) -> type[Rule]:
    wanted = code_or_name.strip()
    for rule in all_rules():
        if wanted.upper() == rule.code or wanted.lower() == rule.name:
            return rule
    raise UsageError(f"unknown rule {code_or_name!r}; `archlint rules` lists them")


def select_rules(select: Sequence[str] | None = None, ignore: Sequence[str] | None = None) -> list[type[Rule]]:
    """Rules chosen by code, prefix (``LORA``, ``LORA00``), name, or ``ALL`` (ruff's semantics:
    ``select`` first, then ``ignore`` removes)."""
    rules = all_rules()
    chosen = [r for r in rules if _matches_any(r, select)] if select else list(rules)
    if ignore:
        chosen = [r for r in chosen if not _matches_any(r, ignore)]
    return chosen


def _matches_any(rule: type[Rule], selectors: Iterable[str]) -> bool:
    return any(_matches(rule, s) for s in selectors)


def _matches(rule: type[Rule], selector: str) -> bool:
    return _name_matches(rule.code, rule.name, selector)


def _name_matches(code: str, name: str, selector: str) -> bool:
    s = selector.strip()
    return s.upper() == "ALL" or code.startswith(s.upper()) or s.lower() == name


def validate_selectors(selectors: Iterable[str]) -> None:
    """Unknown codes are a usage error, never silently ignored."""
    from ..selection import rule_catalogue

    known = rule_catalogue()
    for s in selectors:
        if not any(_name_matches(code, name, s) for code, name in known):
            raise UsageError(f"unknown rule code or prefix {s!r}; `archlint rules` lists them")
