"""Roles of a whole model, by module path, read from one trace per distinct block.

A *block* is a module with submodules or parameters of its own -- an attention, an MLP or
MoE block, a mixer -- below the repeated layers (a decoder layer itself needs masks and
caches to run, so its parts are traced instead). The role of a projection is asked of its
nearest enclosing block whose forward could be recorded and read: the trace of that block
is made once per set of provably alike modules (30 layers that differ only in an index
their forward does not read: one trace, :mod:`~archlint.probe.alike`) and
:func:`~archlint.probe.roles.read_roles` decides every projection's role in it.

:meth:`RoleMap.of` answers for one module or stacked-parameter path with a
:class:`RoleAnswer`: the roles, the block they were read in, and the evidence; or, when no
enclosing block could be traced or the projection does not appear in its trace,
``read=False`` with what could not be read -- callers then report at low confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .roles import BlockRoles, PartRole, Role, read_roles
from .run import Probe


@dataclass(frozen=True)
class RoleAnswer:
    """The roles of one projection (every part of its output)."""

    path: str
    parts: tuple[PartRole, ...] = ()
    block: str = ""  # the traced block the roles were read in
    unread: str = ""  # why there is no reading, when there is none

    @property
    def read(self) -> bool:
        return not self.unread

    @property
    def roles(self) -> set[Role]:
        return {p.role for p in self.parts}

    @property
    def evidence(self) -> list[str]:
        return [f"{p.part or 'whole'}: {p.role.value} ({'; '.join(p.evidence)})" for p in self.parts]

    def to_dict(self) -> dict:
        return {"block": self.block, "parts": [p.to_dict() for p in self.parts],
                **({"unread": self.unread} if self.unread else {})}


@dataclass
class BlockReading:
    roles: BlockRoles | None
    error: str = ""


def _reading(result: Probe) -> BlockReading:
    if not result.ok:
        return BlockReading(None, result.error)
    try:
        return BlockReading(read_roles(result.trace))
    except Exception as e:  # an unusual trace is no reading, never a crash
        return BlockReading(None, f"{type(e).__name__}: {e}")


@dataclass
class RoleMap:
    """Roles by path for one model; ``probe(module)`` is the lint's (cached) probe."""

    graph: object  # archlint.graph.ModuleGraph
    probe: Callable[[nn.Module], Probe]
    _blocks: dict[int, tuple[Probe, BlockReading]] = field(default_factory=dict, repr=False)
    _layers: set[str] = field(default_factory=set, repr=False)
    _keys: dict[int, int] = field(default_factory=dict, repr=False)
    _answers: dict[str, RoleAnswer] = field(default_factory=dict, repr=False)
    _block_paths: list[str] | None = field(default=None, repr=False)
    _by_structure: dict[str, bool] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for info in self.graph:
            if isinstance(info.module, nn.ModuleList):
                self._layers.update(info.children.values())

    def block(self, module: nn.Module) -> BlockReading:
        """The roles read in ``module``'s own trace (once per probe: modules that share
        their probe share the reading)."""
        key = self._keys.get(id(module))
        if key is None:
            result = self.probe(module)
            key = self._keys[id(module)] = id(result)  # kept alive in _blocks: the id is not reused
            if key not in self._blocks:
                self._blocks[key] = (result, _reading(result))
        return self._blocks[key][1]

    def of(self, path: str) -> RoleAnswer:
        """The roles of the projection at ``path`` (a module, or a stacked parameter
        such as ``...experts.gate_up_proj``), read in its nearest traceable block."""
        if path not in self._answers:
            self._answers[path] = self._of(path)
        return self._answers[path]

    def blocks(self) -> list[str]:
        """Paths of the blocks whose trace could be read: the parts of each repeated layer
        (of the model's children when nothing repeats), and, where a part cannot be
        traced, its own parts in turn; a layer none of whose parts can be read is tried
        whole."""
        if self._block_paths is None:
            found: list[str] = []
            layers = sorted(self._layers) or [""]
            for layer in layers:
                under = self._readable(list(self.graph.info(layer).children.values()))
                if not under and layer and self._readable_structure(self.graph.info(layer)):
                    under = [layer]
                found.extend(under)
            self._block_paths = list(dict.fromkeys(found))
        return self._block_paths

    def _readable(self, frontier: list[str]) -> list[str]:
        found, seen = [], set()
        while frontier:
            path = frontier.pop(0)
            if path in seen or path in self._layers:
                continue
            seen.add(path)
            info = self.graph.info(path)
            if isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
                frontier.extend(info.children.values())
                continue
            if info.is_leaf and not self._owns_weight(path):
                continue
            if self._readable_structure(info):
                found.append(path)
            else:
                frontier.extend(info.children.values())
        return found

    def _readable_structure(self, info) -> bool:
        key = info.structure_key or info.path
        if key not in self._by_structure:
            self._by_structure[key] = self.block(info.module).roles is not None
        return self._by_structure[key]

    def _of(self, path: str) -> RoleAnswer:
        errors = []
        for block_path in [*self._enclosing_blocks(path), *([path] if self._owns_weight(path) else [])]:
            info = self.graph.info(block_path)
            reading = self.block(info.module)
            if reading.roles is None:
                errors.append(f"`{block_path}` could not be traced ({reading.error})")
                continue
            relative = "weight" if block_path == path else path[len(block_path) + 1:]
            parts = reading.roles.of(relative)
            if parts:
                return RoleAnswer(path, tuple(parts), block_path)
        if not errors:
            errors.append("no enclosing block's trace uses it as a projection")
        return RoleAnswer(path, unread="; ".join(errors[:2]))

    def block_roles(self, path: str) -> BlockRoles | None:
        """The roles read in the module at ``path`` itself, or None."""
        return self.block(self.graph.info(path).module).roles

    def is_router(self, path: str) -> bool | None:
        """True/False from the trace; None when no trace tells."""
        answer = self.of(path)
        if not answer.read:
            return None
        return Role.ROUTER in answer.roles

    def _owns_weight(self, path: str) -> bool:
        try:
            info = self.graph.info(path)
        except KeyError:
            return False
        weight = info.parameters.get("weight")
        return weight is not None and weight.ndim == 2 and not isinstance(info.module, nn.Linear)

    def _enclosing_blocks(self, path: str) -> list[str]:
        """Ancestors of ``path`` worth tracing, nearest first, up to the repeated layer
        holding it: modules with children, not lists, not the model root."""
        out = []
        parts = path.split(".")
        repeated = self._layers
        for depth in range(len(parts) - 1, 0, -1):
            candidate = ".".join(parts[:depth])
            try:
                info = self.graph.info(candidate)
            except KeyError:
                continue  # a parameter's name is not a module
            if isinstance(info.module, (nn.ModuleList, nn.ModuleDict)):
                break  # what holds the layers is no block
            if not info.is_leaf or len(parts) - depth == 1:
                out.append(candidate)
            if candidate in repeated:
                break  # a whole layer is the last resort: its forward usually needs masks and caches
        return out
