"""Rule discovery and selection.

Built-in rules are found by walking this package (one module per rule, no hand-kept
list); every :class:`Rule` subclass with a ``code`` is a rule. Third-party rules come
from the ``archlint.rules`` entry-point group (:mod:`.plugins`) and are selected the
same way.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ..errors import UsageError
from .base import Example, LintContext, Rule
from .plugins import load_plugin_rules

__all__ = ["Example", "LintContext", "Rule", "all_rules", "builtin_rules", "get_rule", "plugin_problems"]


@cache
def all_rules() -> tuple[type[Rule], ...]:
    """Every rule, built-in and from installed plugins, sorted by code.

    A broken plugin is logged and left out (see :mod:`.plugins`); it never raises here.
    """
    return _discover()[0]


def plugin_problems() -> tuple[str, ...]:
    """Why each skipped plugin was skipped, as logged when the rules were discovered."""
    return _discover()[1]


def rules_discovered() -> bool:
    """Whether this process has discovered the rules (and so logged any plugin problem)."""
    return _discover.cache_info().currsize > 0


@cache
def _discover() -> tuple[tuple[type[Rule], ...], tuple[str, ...]]:
    builtin = builtin_rules()
    plugins, problems = load_plugin_rules(builtin)
    return tuple(sorted((*builtin, *plugins), key=lambda r: r.code)), tuple(str(p) for p in problems)


@cache
def builtin_rules() -> tuple[type[Rule], ...]:
    """Every rule shipped in this package, sorted by code."""
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base", "plugins") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            defined_here = isinstance(obj, type) and obj.__module__ == module.__name__
            if defined_here and issubclass(obj, Rule) and hasattr(obj, "code"):
                if obj.code in found:
                    raise RuntimeError(f"rule code {obj.code} defined twice: "
                                       f"{found[obj.code].__module__} and {module.__name__}")
                found[obj.code] = obj
    return tuple(found[c] for c in sorted(found))


def get_rule(code_or_name: str) -> type[Rule]:
    wanted = code_or_name.strip()
    for rule in all_rules():
        if wanted.upper() == rule.code or wanted.lower() == rule.name:
            return rule
    raise UsageError(f"unknown rule {code_or_name!r}; `archlint rules` lists them")
