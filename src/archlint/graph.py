"""The module tree as a networkx graph, with repeated blocks grouped by structure.

One node per module (keyed by its first path; a module shared under several names is
one node listing every name), parent -> child edges named by the attribute. Each node
carries what rules need without touching the network or the weights: class, bases,
defining file, own parameters and buffers with shapes and dtypes, tied parameters.

Repeated blocks: every node gets a structural key (class + own tensors + children's
keys, computed bottom-up) and a pattern (its path with numeric segments starred).
Nodes sharing both are one *group*: rules analyse a group once and report all its
paths, so 30 identical decoder layers cost one check and read as one finding.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import networkx as nx
from torch import nn

from .findings import path_sort_key, star_indices


@dataclass(frozen=True)
class TensorInfo:
    """A parameter or buffer owned directly by a module."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    tied_to: tuple[str, ...] = ()  # other full paths of the same tensor

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(eq=False)  # identity semantics: one object per module, hashable
class ModuleInfo:
    """Everything archlint knows about one module of the tree."""

    path: str
    module: nn.Module
    names: tuple[str, ...]
    class_name: str
    qualname: str
    bases: tuple[str, ...]
    source_file: str | None
    parameters: dict[str, TensorInfo]
    buffers: dict[str, TensorInfo]
    children: dict[str, str] = field(default_factory=dict)  # attribute -> child path
    pattern: str = ""
    structure_key: str = ""  # a hash of class, own tensors and children's keys: equal keys, equal structure
    tower: str = ""

    @property
    def cls(self) -> type:
        return type(self.module)

    @property
    def leaf_name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def is_leaf(self) -> bool:
        return not self.children


@dataclass(frozen=True)
class RepeatedBlocks:
    """The model's stacks of repeated blocks: every ``nn.ModuleList`` of two or more
    entries that all have submodules (decoder layers, encoder layers, experts as modules).

    ``lists`` maps each such list to its entries' paths, nested stacks included;
    ``outer`` maps each block that sits in no other block to its list."""

    lists: dict[str, tuple[str, ...]]
    outer: dict[str, str]

    def block_of(self, path: str) -> str | None:
        """The outer block ``path`` is (or lies in), or None."""
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in self.outer:
                return prefix
        return None

    def list_of(self, block: str) -> str:
        return self.outer[block]


@dataclass(frozen=True)
class Group:
    """Modules with the same pattern and the same structure: analysed once."""

    pattern: str
    paths: tuple[str, ...]
    representative: ModuleInfo  # the module at the first path; the others have the same structure

    @property
    def info(self) -> ModuleInfo:
        """The representative, under the name rules written before it was renamed use."""
        return self.representative


class ModuleGraph:
    """A module tree as a ``networkx.DiGraph`` plus the queries rules use."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.nx = nx.DiGraph()
        self._groups: list[Group] | None = None
        self._build(root)

    # -- construction -------------------------------------------------------------

    def _build(self, root: nn.Module) -> None:
        aliases: dict[int, list[str]] = defaultdict(list)
        first: dict[int, tuple[str, nn.Module]] = {}
        for name, module in root.named_modules(remove_duplicate=False):
            aliases[id(module)].append(name)
            first.setdefault(id(module), (name, module))

        tied = _tied_parameters(root)
        for key, (path, module) in first.items():
            cls = type(module)
            info = ModuleInfo(
                path=path,
                module=module,
                names=tuple(aliases[key]),
                class_name=cls.__name__,
                qualname=f"{cls.__module__}.{cls.__qualname__}",
                bases=tuple(f"{b.__module__}.{b.__qualname__}" for b in cls.__mro__[1:] if b is not object),
                source_file=_source_file(cls),
                parameters={
                    n: _tensor_info(n, p, tied.get(id(p), ()), path)
                    for n, p in module.named_parameters(recurse=False)
                },
                buffers={n: _tensor_info(n, b, (), path) for n, b in module.named_buffers(recurse=False)},
                pattern=star_indices(path),
            )
            self.nx.add_node(path, info=info)
        for path, module in first.values():
            for attr, child in module.named_children():
                child_path = first[id(child)][0]
                self.nx.add_edge(path, child_path, attr=attr)
                self.info(path).children[attr] = child_path
        self._assign_structure(first[id(root)][0])

    def _assign_structure(self, root_path: str) -> None:
        from transformers import PreTrainedModel

        # Iterative post-order: deep encoders must not hit Python's recursion limit.
        order = list(nx.dfs_postorder_nodes(self.nx, root_path))
        for path in order:
            info = self.info(path)
            own = sorted((n, t.shape, t.dtype) for n, t in {**info.parameters, **info.buffers}.items())
            kids = sorted((attr, self.info(child).structure_key) for attr, child in info.children.items())
            digest = hashlib.blake2b(repr((info.qualname, own, kids)).encode(), digest_size=8)
            info.structure_key = digest.hexdigest()
        # A tower is the sub-model a module belongs to: its nearest PreTrainedModel
        # (language_model, vision_tower, ...). A plain nn.Module tree has no such marks;
        # there the root's children are the towers.
        hf_root = isinstance(self.root, PreTrainedModel)
        for path in reversed(order):
            info = self.info(path)
            parent = self.parent(path)
            if parent is None or (hf_root and isinstance(info.module, PreTrainedModel)):
                info.tower = path
            elif not hf_root and parent.path == root_path:
                info.tower = path
            else:
                info.tower = parent.tower

    # -- queries ----------------------------------------------------------------

    def info(self, path: str) -> ModuleInfo:
        return self.nx.nodes[path]["info"]

    def __iter__(self) -> Iterator[ModuleInfo]:
        for path in self.nx.nodes:
            yield self.info(path)

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def parent(self, path: str) -> ModuleInfo | None:
        preds = list(self.nx.predecessors(path))
        return self.info(preds[0]) if preds else None

    def children(self, path: str) -> list[ModuleInfo]:
        return [self.info(c) for c in self.nx.successors(path)]

    @property
    def groups(self) -> list[Group]:
        """Every distinct (pattern, structure) group, each with all its paths."""
        if self._groups is None:
            buckets: dict[tuple[str, str], list[str]] = defaultdict(list)
            for info in self:
                buckets[(info.pattern, info.structure_key)].append(info.path)
            groups = []
            for (pattern, _), paths in buckets.items():
                paths.sort(key=path_sort_key)
                groups.append(Group(pattern, tuple(paths), self.info(paths[0])))
            groups.sort(key=lambda g: path_sort_key(g.paths[0]))
            self._groups = groups
        return self._groups

    @functools.cached_property
    def blocks(self) -> RepeatedBlocks:
        """The repeated blocks of this model (see :class:`RepeatedBlocks`)."""
        lists = {}
        for info in self:
            if isinstance(info.module, nn.ModuleList) and len(info.children) >= 2:
                kids = [self.info(c) for c in info.children.values()]
                if all(not k.is_leaf for k in kids):
                    lists[info.path] = tuple(k.path for k in kids)
        every = {block: list_path for list_path, blocks in lists.items() for block in blocks}
        outer = {b: lp for b, lp in every.items() if not any(q in every for q in _proper_prefixes(b))}
        return RepeatedBlocks(lists, outer)

    def distinct(self, predicate: Callable[[ModuleInfo], bool]) -> Iterator[Group]:
        """The groups whose representative satisfies ``predicate`` (checked once per group)."""
        for group in self.groups:
            if predicate(group.representative):
                yield group

    def tower_of(self, name: str) -> str:
        """The tower of a module or parameter path (its nearest enclosing module's tower)."""
        parts = name.split(".") if name else []
        for i in range(len(parts), -1, -1):
            prefix = ".".join(parts[:i])
            if prefix in self.nx.nodes:
                return self.info(prefix).tower
        return ""

    def parameter_count(self) -> int:
        """Unique parameters (tied tensors counted once)."""
        seen: set[int] = set()
        total = 0
        for p in self.root.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total


def _proper_prefixes(path: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _tensor_info(name, tensor, tied_paths, owner) -> TensorInfo:
    full = f"{owner}.{name}" if owner else name
    return TensorInfo(
        name=name,
        shape=tuple(tensor.shape),
        dtype=str(tensor.dtype).removeprefix("torch."),
        numel=tensor.numel(),
        tied_to=tuple(p for p in tied_paths if p != full),
    )


def _tied_parameters(root: nn.Module) -> dict[int, tuple[str, ...]]:
    names: dict[int, list[str]] = defaultdict(list)
    for name, p in root.named_parameters(remove_duplicate=False):
        names[id(p)].append(name)
    return {k: tuple(v) for k, v in names.items() if len(v) > 1}


@functools.cache
def _source_file(cls: type) -> str | None:
    try:
        return inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
