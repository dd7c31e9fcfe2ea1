"""What a ``target_modules`` entry reaches, by PEFT's rules -- the one place that answers it.

PEFT (``check_target_module_exists``) reads ``target_modules`` two ways:

* a string is one regular expression, full-matched against each module path;
* a list of names reaches the path equal to a name or ending in ``.<name>``, and then
  ``layers_to_transform``/``layers_pattern`` keep only the layers listed.

``exclude_modules`` is read the same way and wins; a module under ``modules_to_save`` is
never a target. A user-written entry (a per-module-ignores ``modules`` item, a
command-line ``--target-modules`` value) is a bare name or suffix, or ``re:REGEX`` for
a full-matched regex. ``target_parameters`` entries reach a parameter by its full path or
a dotted suffix.

Plans (:mod:`.evaluate`, :mod:`.reimplementation`), the recipes, suppressions and
per-module-ignores all ask this module. The installed PEFT is asked the same question
only where it is the oracle (:func:`.oracle.peft_entry_matcher`); the tests hold both equal.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

#: The prefix that marks a user-written entry as a regex.
REGEX_PREFIX = "re:"

Targets = Collection[str] | str | None  # names, one full-match regex, or nothing


def reaches(key: str, targets: Targets, *, exclude: Targets = None,
            layers_to_transform: int | Collection[int] | None = None,
            layers_pattern: str | Collection[str] | None = None,
            modules_to_save: Iterable[str] = ()) -> bool | None:
    """Whether ``targets`` reach the module ``key``: True, False, or None when ``exclude``
    or ``modules_to_save`` keeps it out (PEFT then counts it as excluded)."""
    if exclude and reaches(key, exclude) is True:
        return None
    if any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in modules_to_save):
        return None
    if targets is None:
        return False
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    if key in targets:
        return True  # a name given whole is taken whatever layers_to_transform says
    found = _ends_with_any(key, targets)
    using_layers = layers_to_transform is not None and (
        len(layers_to_transform) != 0 if isinstance(layers_to_transform, Collection) else True)
    if not (found and using_layers):
        return found
    index = layer_index(key, layers_pattern)
    if index is None:
        return False
    return index == layers_to_transform if isinstance(layers_to_transform, int) else index in layers_to_transform


def _ends_with_any(key: str, names: Collection[str]) -> bool:
    """``any(key.endswith("." + n) for n in names)``; for a set, each dotted suffix of ``key``
    is looked up instead, so the cost follows the key's depth, not the number of names
    (``all-linear`` on a deep model names every linear layer)."""
    if not isinstance(names, (set, frozenset)):
        return any(key.endswith("." + n) for n in names)
    position = key.find(".")
    while position != -1:
        if key[position + 1:] in names:
            return True
        position = key.find(".", position + 1)
    return False


def layer_index(key: str, layers_pattern: str | Collection[str] | None) -> int | None:
    """The layer number PEFT reads from a module path for ``layers_to_transform``."""
    if not layers_pattern:
        m = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        m = None
        for pattern in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
            m = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if m:
                break
    return int(m.group("idx")) if m else None


def written_entry(entry: str) -> Targets:
    """A user-written entry as PEFT would be given it: ``re:REGEX`` -> the regex, a name -> ``(name,)``."""
    return entry[len(REGEX_PREFIX):] if entry.startswith(REGEX_PREFIX) else (entry,)


def written_entry_reaches(entry: str, key: str) -> bool:
    """Whether one user-written entry (``re:REGEX``, a name or a dotted suffix) reaches ``key``."""
    return reaches(key, written_entry(entry)) is True


def parameter_reached(key: str, entries: Iterable[str]) -> bool:
    """PEFT's ``target_parameters`` rule: the parameter's full path, or a dotted suffix of it."""
    return any(key == e or key.endswith("." + e) for e in entries)


def parameters_reached(parameter_paths: Iterable[str], entries: Iterable[str]) -> tuple[str, ...]:
    """The parameter paths ``entries`` reach, in the order given."""
    entries = list(entries)
    return tuple(p for p in parameter_paths if parameter_reached(p, entries))
