"""Which rules run: selectors (code, prefix, name, ``ALL``) and the layered select/extend/ignore.

Layers are applied in order -- the configuration file, then the command line. In each
layer ``select`` (when given) restarts the set, ``extend-select`` adds, ``ignore``
removes. So a command-line ``--select`` discards the file's choices, a command-line
``--ignore`` always applies, and a command-line ``--extend-select`` beats the file's
``ignore`` (ruff's precedence, flattened to two layers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import UsageError
from .rules import all_rules


@dataclass(frozen=True)
class Layer:
    select: Sequence[str] | None = None
    extend_select: Sequence[str] = ()
    ignore: Sequence[str] = ()


def selector_codes(selector: str) -> frozenset[str]:
    """The codes of every known rule ``selector`` names (empty when it names none)."""
    return frozenset(r.code for r in all_rules() if specificity(selector, r.code, r.name) is not None)


def specificity(selector: str, code: str, name: str | None = None) -> int | None:
    """How precisely ``selector`` names the rule ``code``: ``None`` not at all, higher is more precise."""
    s = selector.strip()
    if name is None:
        name = next((r.name for r in all_rules() if r.code == code), "")
    if s.lower() == name or s.upper() == code:
        return 100
    if s.upper() == "ALL":
        return 0
    if s and code.startswith(s.upper()):
        return len(s)
    return None


def selected_codes(layers: Iterable[Layer]) -> list[str]:
    """The codes that run after applying ``layers`` in order, sorted."""
    def named(selectors: Iterable[str]) -> set[str]:
        return set().union(*(selector_codes(s) for s in selectors))

    chosen = {r.code for r in all_rules()}
    for layer in layers:
        if layer.select is not None:
            chosen = named(layer.select)
        chosen |= named(layer.extend_select)
        chosen -= named(layer.ignore)
    return sorted(chosen)


def validate_selectors(selectors: Iterable[str]) -> None:
    """Unknown codes are a usage error, never silently ignored."""
    for s in selectors:
        if not selector_codes(s):
            raise UsageError(f"unknown rule code or prefix {s!r}; `archlint rules` lists them")
