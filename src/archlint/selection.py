"""Which rules run: selectors (code, prefix, name, ``ALL``) and the layered select/extend/ignore.

Layers are applied in order -- the configuration file, then the command line. In each
layer ``select`` (when given) restarts the set, ``extend-select`` adds, ``ignore``
removes. So a command-line ``--select`` discards the file's choices, a command-line
``--ignore`` always applies, and a command-line ``--extend-select`` beats the file's
``ignore`` (ruff's precedence, flattened to two layers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class Layer:
    select: Sequence[str] | None = None
    extend_select: Sequence[str] = ()
    ignore: Sequence[str] = ()


_stored_catalogue: tuple[tuple[str, str], ...] | None = None


def rule_catalogue() -> tuple[tuple[str, str], ...]:
    """``(code, name)`` of every rule, built-in and from plugins, sorted by code.

    Selection needs only these names; a catalogue stored by the result cache
    (:func:`known_rules`) answers without importing the rules (and torch).
    """
    if _stored_catalogue is not None:
        return _stored_catalogue
    from .rules import all_rules

    return tuple((r.code, r.name) for r in all_rules())


@contextmanager
def known_rules(catalogue: Iterable[tuple[str, str]] | None) -> Iterator[None]:
    """Within the block, :func:`rule_catalogue` answers from ``catalogue`` (a stored one);
    None leaves it as it is."""
    global _stored_catalogue
    previous = _stored_catalogue
    if catalogue is not None:
        _stored_catalogue = tuple((str(code), str(name)) for code, name in catalogue)
    try:
        yield
    finally:
        _stored_catalogue = previous


def selector_codes(selector: str) -> frozenset[str]:
    """The codes of every known rule ``selector`` names (empty when it names none)."""
    return frozenset(code for code, name in rule_catalogue() if specificity(selector, code, name) is not None)


def specificity(selector: str, code: str, name: str | None = None) -> int | None:
    """How precisely ``selector`` names the rule ``code``: ``None`` not at all, higher is more precise."""
    s = selector.strip()
    if name is None:
        name = next((n for c, n in rule_catalogue() if c == code), "")
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

    chosen = {code for code, _ in rule_catalogue()}
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
