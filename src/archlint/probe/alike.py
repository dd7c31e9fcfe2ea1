"""Which modules provably share one trace: the probes of a lint, memoised per behaviour.

Two layers built from one class usually differ only in attributes their forward never
reads at probe time: ``layer_idx`` is passed to a KV cache the probe does not give, the
layer's number is kept for logging. Other layers read it to choose their behaviour
(``config.layer_types[self.layer_idx]`` at call time). Which case holds is not guessed
from a list of classes or from the source: the first module of a structure is probed
while every attribute read on any module is recorded, and a later module shares that
probe exactly when

* it has the same structure: the same classes under the same names, the same parameters
  and buffers (name, shape, dtype), the same probe input (dtype, extra tensor argument);
* every attribute the recorded probe read, on the module or any of its submodules, has
  the same value on it: equal plain data (numbers, strings, None, dtypes, and tuples,
  lists, sets and dicts of them), the very same object otherwise (its config, a function).

The forward is a deterministic function of its inputs, the module's tensors and the
attributes it reads, so a run on the second module reads the same attributes with the
same values and records the same ops: the first one's trace is its trace. Reads the
recorder cannot attribute make the probe stand for identical modules only: a read of the
instance dictionary (outside ``torch.nn.Module``'s own attribute lookup), a read on a
module outside the probed one, a class that overrides ``__getattribute__``. Attributes
nothing read (``layer_idx`` above) may differ. Reads are recorded by installing
``__getattribute__`` on ``torch.nn.Module`` while a probe runs (reference-counted, per
thread; removed afterwards), so every attribute lookup on a module passes through it.

This is a stricter "alike" than the structural key the shrunk copy keeps one layer per
(:mod:`archlint.shrink`, :attr:`archlint.graph.ModuleInfo.structure_key`: class, tensors,
children), which is right for what PEFT wraps but not for what a forward computes: Gemma-3's
26 attention layers have one structural key, yet sliding and full layers read another
``sliding_window`` and trace differently.
"""

from __future__ import annotations

import enum
import functools
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .run import Probe

#: nn.Module's own containers: their contents are compared as the structure (names,
#: classes, tensor shapes and dtypes), not as attribute values.
_CONTAINERS = frozenset({"_parameters", "_buffers", "_modules"})
_PLAIN = frozenset({type(None), bool, int, str, bytes, torch.dtype, torch.device})
_MISSING = object()
#: Reads of a module's ``__dict__`` in these frames look up only its containers (an
#: attribute that is a parameter, buffer or submodule, or where to store one).
_LOOKUP_CODE = frozenset({nn.Module.__getattr__.__code__, nn.Module.__setattr__.__code__,
                          nn.Module.__delattr__.__code__})


@dataclass
class Reads:
    """Attributes read on modules while a probe ran: ``(id(module), name)``; modules whose
    whole instance dictionary was read are in ``whole``."""

    attributes: set[tuple[int, str]] = field(default_factory=set)
    whole: set[int] = field(default_factory=set)


_lock = threading.Lock()
_active: dict[int, Reads] = {}  # thread id -> the reads being recorded in it
_installed = 0


def _recording_getattribute(self, name):
    reads = _active.get(threading.get_ident())
    if reads is not None:
        if name == "__dict__" and sys._getframe(1).f_code not in _LOOKUP_CODE:
            reads.whole.add(id(self))
        else:
            reads.attributes.add((id(self), name))
    return object.__getattribute__(self, name)


@contextmanager
def recording_reads() -> Iterator[Reads]:
    """Record every attribute read on a module in this thread while the block runs."""
    global _installed
    reads = Reads()
    ident = threading.get_ident()
    with _lock:
        if ident in _active:
            raise RuntimeError("attribute reads are already being recorded in this thread")
        if _installed == 0:
            nn.Module.__getattribute__ = _recording_getattribute
        _installed += 1
        _active[ident] = reads
    try:
        yield reads
    finally:
        with _lock:
            del _active[ident]
            _installed -= 1
            if _installed == 0:
                del nn.Module.__getattribute__


def structure(module: nn.Module, modules: dict[str, nn.Module]) -> tuple:
    """Class, submodules (name, class) and tensors (name, shape, dtype) of ``module``
    (``modules``: its ``named_modules()``)."""
    cls = type(module)
    tensors = sorted(
        (n, tuple(t.shape), str(t.dtype))
        for n, t in [*module.named_parameters(), *module.named_buffers()]
    )
    kinds = [(name, type(m).__module__, type(m).__qualname__) for name, m in modules.items()]
    return cls.__module__, cls.__qualname__, tuple(tensors), tuple(kinds)


def _attributes(modules: dict[str, nn.Module]) -> dict[tuple[str, str], object]:
    """Every instance attribute of the modules, by (submodule name, attribute)."""
    return {(name, key): value for name, m in modules.items()
            for key, value in vars(m).items() if key not in _CONTAINERS}


def frozen(value, alive: list, inside: dict[int, str]) -> object:
    """A hashable stand-in for an attribute value, taken now (a later mutation does not
    change it): plain data (numbers, strings, None, dtypes, enum members, and tuples, lists,
    sets and dicts of them) by type and value; a module of the probed one (``inside``:
    id -> name) by its name; ``functools.partial`` and bound methods by their parts;
    anything else by identity (``alive`` keeps the object, so its id is not reused)."""
    kind = type(value)
    if kind is float or kind is complex:
        return kind, repr(value)  # -0.0 is not 0.0
    if kind in _PLAIN or isinstance(value, enum.Enum):
        return kind, value
    if kind in (tuple, list, torch.Size):
        return kind, tuple(frozen(v, alive, inside) for v in value)
    if kind in (set, frozenset):
        return kind, frozenset(frozen(v, alive, inside) for v in value)
    if kind in (dict, OrderedDict):
        return kind, tuple((frozen(k, alive, inside), frozen(v, alive, inside)) for k, v in value.items())
    if id(value) in inside:
        return nn.Module, inside[id(value)]
    if kind is functools.partial:
        return kind, *(frozen(v, alive, inside) for v in (value.func, value.args, value.keywords))
    if kind is types.MethodType:
        return kind, frozen(value.__func__, alive, inside), frozen(value.__self__, alive, inside)
    alive.append(value)
    return object, id(value)


def _overrides_getattribute(module: nn.Module) -> bool:
    """Whether a class of ``module`` or a submodule looks attributes up its own way (or
    something else has installed a lookup on ``torch.nn.Module`` itself)."""
    if vars(nn.Module).get("__getattribute__", _recording_getattribute) is not _recording_getattribute:
        return True
    for m in module.modules():
        for cls in type(m).__mro__:
            if cls is nn.Module:
                break
            if "__getattribute__" in vars(cls):
                return True
    return False


@dataclass(frozen=True)
class _Shared:
    """One recorded probe and what a module must match to share it: the values of the
    attributes it read, or (``needs`` None) all its attributes."""

    probe: Probe
    attributes: dict[tuple[str, str], object]  # all of the probed module's, frozen before its probe
    needs: dict[tuple[str, str], object] | None

    def fits(self, modules: dict[str, nn.Module], inside: dict[int, str]) -> bool:
        """Whether a module of the same structure (``modules``: its ``named_modules()``)
        has the values this probe needs; only those are frozen."""
        scratch: list = []  # an object compared by identity is kept alive by self.attributes
        if self.needs is None:
            return {k: frozen(v, scratch, inside) for k, v in _attributes(modules).items()} == self.attributes
        for (name, attribute), wanted in self.needs.items():
            value = vars(modules[name]).get(attribute, _MISSING) if attribute not in _CONTAINERS else _MISSING
            if (value is _MISSING) != (wanted is _MISSING):
                return False
            if value is not _MISSING and frozen(value, scratch, inside) != wanted:
                return False
        return True


class ProbeMemo:
    """The probes of one lint: each structure is probed once per behaviour it shows.
    ``run(module, input_dtype, with_tensors=...)`` makes a probe."""

    def __init__(self, run: Callable[..., Probe]):
        self._run = run
        self._shared: dict[tuple, list[_Shared]] = {}
        self._alive: list = []
        self.runs = 0  # how many probes ran

    def probe(self, module: nn.Module, input_dtype: torch.dtype | None = None, *,
              with_tensors: bool = False) -> Probe:
        """The probe of ``module``: an earlier one it provably shares, else a new one."""
        modules = dict(module.named_modules())
        key = (structure(module, modules), str(input_dtype), with_tensors)
        inside = {id(m): name for name, m in modules.items()}
        candidates = self._shared.setdefault(key, [])
        for shared in candidates:
            if shared.fits(modules, inside):
                return shared.probe
        attributes = {k: frozen(v, self._alive, inside) for k, v in _attributes(modules).items()}
        self.runs += 1
        if _overrides_getattribute(module):
            result = self._run(module, input_dtype, with_tensors=with_tensors)
            candidates.append(_Shared(result, attributes, None))
            return result
        with recording_reads() as reads:
            result = self._run(module, input_dtype, with_tensors=with_tensors)
        candidates.append(_Shared(result, attributes, _needs(inside, attributes, reads)))
        return result


def _needs(names: dict[int, str], attributes: dict, reads: Reads) -> dict | None:
    """The attribute values a module (``names``: id -> name of it and its submodules) must
    have to share a probe that made ``reads``; None when every attribute must match."""
    if any(owner not in names for owner, _ in reads.attributes) or any(o not in names for o in reads.whole):
        return None  # a module outside the probed one: its state is not compared
    needs = {}
    for owner, attribute in reads.attributes:
        if attribute not in _CONTAINERS and attribute != "__dict__":
            key = (names[owner], attribute)
            needs[key] = attributes.get(key, _MISSING)
    for owner in reads.whole:
        needs.update({k: v for k, v in attributes.items() if k[0] == names[owner]})
    return needs
