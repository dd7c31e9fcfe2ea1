"""A separate copy of a transformers model with its repeated blocks cut down to one
layer per distinct block structure (at least two), for whole-model forwards.

Which layers to keep is read from the user's built model, not from a list of model
types: the blocks of each stack of repeated blocks (:attr:`ModuleGraph.blocks`) are
grouped by their structural key and what the config says of each layer (its entry in every
per-layer list, whether it reuses another layer's K/V), and the first layer of each such kind is
kept, plus the last layer
(or, when that copy cannot be built, a prefix, or the first two layers of each structure: a block
tied across the layers of one structure needs two of them to tie). The
config that owns the list is rewritten accordingly: ``num_hidden_layers``, every
per-layer list, list of layer numbers and per-layer dict whose name says ``layer``
(``layer_types``, ``cross_attention_layers``, ``per_layer_config``), and
``num_kv_shared_layers``, which counts the last layers.
Gemma-4 E2B's 35 text layers (own/shared K/V × sliding/full) become 4. Where the config places
a structure by a layer number (DeepSeek-V3's ``first_k_dense_replace=3``), that number is moved
to where the structure starts in the copy, and DeepSeek-V3's 61 layers become 2, not a prefix of 5.

The copy is kept only if it has exactly the module classes of the model and, for each
shrunk list, exactly its set of block structures (with a moved layer number: each layer the
structure of the layer it stands for); anything else returns ``None`` and the caller uses the
model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .build import BuiltModel, assert_no_storage, config_dtype
from .graph import ModuleGraph


@dataclass(frozen=True)
class ShrunkModel:
    module: nn.Module
    description: str
    kept: dict[str, tuple[int, ...]]  # ModuleList path -> indices of the original layers kept

    def original_path(self, path: str) -> str:
        """The user's model path for a path of the copy (``layers.3`` -> ``layers.34``)."""
        for list_path, kept in self.kept.items():
            prefix = f"{list_path}." if list_path else ""
            if path.startswith(prefix):
                head, _, rest = path[len(prefix):].partition(".")
                if head.isdigit() and int(head) < len(kept):
                    return f"{prefix}{kept[int(head)]}" + (f".{rest}" if rest else "")
        return path


def shrunk_copy(built: BuiltModel, graph: ModuleGraph) -> ShrunkModel | None:
    """The shrunk copy of ``built.module`` (whose graph is ``graph``), or ``None`` when it
    cannot be made faithfully."""
    from transformers import PreTrainedModel

    root = built.module
    if not isinstance(root, PreTrainedModel) or built.strategy != "meta":
        return None  # factories and meta-unsafe classes: the caller runs the model itself
    attempts = []
    # Sparse layers first, then a prefix up to the last new structure: configs that
    # place structures by index (DeepSeek's `first_k_dense_replace=3`) need the prefix.
    # Last, two layers of each structure: a model that ties one block across the layers
    # of a structure (Zamba's shared transformer) cannot be built with one such layer.
    for keep in ("first", "prefix", "first two"):
        plans = _plans(graph, root.config, keep=keep)
        # All configs at once; a config whose parts index another's layers (Molmo2's
        # adapter `vision_feature_layer`) rejects that, so then one config at a time,
        # the longest stack first (it dominates the forward's cost).
        attempts += [(plans, {})] if len(plans) > 1 else []
        attempts += [({k: v}, {}) for k, v in sorted(plans.items(), key=lambda kv: -kv[1][0])]
        if keep == "first":  # a structure placed by a layer number in the config (DeepSeek's first_k_dense_replace)
            attempts += [({k: v}, moved) for k, v in plans.items()
                         for moved in _moved_boundaries(graph, root.config, k, v)]
    tried = []
    for attempt in attempts:
        if attempt in tried:
            continue
        tried.append(attempt)
        copy = _attempt(graph, root, *attempt)
        if copy is not None:
            return copy
    return None


def _attempt(graph: ModuleGraph, root: nn.Module, plans, moved: dict | None = None) -> ShrunkModel | None:
    data = root.config.to_dict()
    for keypath, (count, keep) in plans.items():
        sub = data
        for key in keypath:
            sub = sub[key]
        _shrink_dict(sub, count, keep, _count_key(_sub_config(root.config, keypath)))
        sub.update((moved or {}).get(keypath, {}))
    try:
        module = _build(type(root), type(root.config).from_dict(data), _dtype(root))
    except Exception:  # the rewritten config is not valid for this class: no copy
        return None
    lists = dict(_lists(graph, root.config, plans))
    if not _faithful(graph, module, lists, in_order=bool(moved)):
        return None
    sizes = ", ".join(f"{p} {len(graph.info(p).children)}→{len(k)}" for p, k in lists.items())
    return ShrunkModel(module, f"shrunk copy ({sizes})", lists)


def _plans(graph, config, *, keep: str = "first") -> dict[tuple[str, ...], tuple[int, tuple[int, ...]]]:
    """Config key path -> (original layer count, layer indices to keep). ``keep`` says which
    layers stand for each structure besides the last layer: its ``first`` layer, every layer
    up to the last structure's first (``prefix``), or its ``first two`` layers."""
    plans: dict[tuple[str, ...], tuple[int, set[int]]] = {}
    for list_path, keypath, count in _candidate_lists(graph, config):
        structure_keys = _layer_kinds(graph, list_path, count, _sub_config(config, keypath))
        kept = {structure_keys.index(s) for s in set(structure_keys) if s != structure_keys[-1]} | {count - 1}
        if keep == "prefix":
            kept = set(range(max(structure_keys.index(s) for s in set(structure_keys)) + 1)) | {count - 1}
        elif keep == "first two":
            for s in set(structure_keys):
                kept.update([i for i, k in enumerate(structure_keys) if k == s][:2])
        if len(kept) < 2:
            kept.add(0)
        old = plans.get(keypath, (count, set()))[1]
        plans[keypath] = (count, old | kept)
    return {k: (n, tuple(sorted(keep))) for k, (n, keep) in plans.items() if len(keep) < n}


def _layer_kinds(graph, list_path: str, count: int, config) -> list[tuple]:
    """Per layer of the stack: its structural key and what the config says of that layer alone
    (its entry in each per-layer list, whether it reuses another layer's K/V). Layers of one
    structure can still behave differently (Gemma-3's sliding and full attention layers have
    the same modules); the copy keeps one layer of each kind."""
    data = config.to_dict()
    lists = [value for key, value in sorted(data.items())
             if _per_layer_list(key, value, count) and list(value) != list(range(count))]
    shared = _kv_shared_layers(data)
    return [(graph.info(graph.info(list_path).children[str(i)]).structure_key,
             tuple(repr(value[i]) for value in lists), shared > 0 and i >= count - shared)
            for i in range(count)]


def _lists(graph, config, plans):
    for list_path, keypath, _ in _candidate_lists(graph, config):
        if keypath in plans:
            yield list_path, plans[keypath][1]


def _candidate_lists(graph, config):
    """(ModuleList path, key path of the config owning it, length) for every list of
    repeated blocks whose owning config says ``num_hidden_layers`` = its length."""
    from transformers import PretrainedConfig

    keypaths = dict(_config_keypaths(config))
    for list_path in graph.blocks.lists:
        info = graph.info(list_path)
        if sorted(info.children) != sorted(str(i) for i in range(len(info.children))):
            continue
        owner = graph.parent(info.path)
        while owner is not None and not isinstance(getattr(owner.module, "config", None), PretrainedConfig):
            owner = graph.parent(owner.path)
        if owner is None or id(owner.module.config) not in keypaths:
            continue
        if owner.module.config.__dict__.get(_count_key(owner.module.config)) == len(info.children):
            yield info.path, keypaths[id(owner.module.config)], len(info.children)


def _count_key(config) -> str:
    """The config key holding the layer count (GPT-2 stores `num_hidden_layers` as `n_layer`)."""
    return (getattr(type(config), "attribute_map", None) or {}).get("num_hidden_layers", "num_hidden_layers")


def _config_keypaths(config, keypath=()):
    yield id(config), keypath
    for key in getattr(type(config), "sub_configs", {}) or {}:
        sub = config.__dict__.get(key)
        if sub is not None and hasattr(sub, "to_dict"):
            yield from _config_keypaths(sub, (*keypath, key))


def _sub_config(config, keypath: tuple[str, ...]):
    for key in keypath:
        config = config.__dict__[key]
    return config


def _shrink_dict(sub: dict, count: int, keep: tuple[int, ...], count_key: str) -> None:
    shared = _kv_shared_layers(sub)
    if shared > 0:  # the last `shared` layers reuse K/V
        sub["num_kv_shared_layers"] = sum(1 for i in keep if i >= count - shared)
    for key, value in list(sub.items()):
        if _is_count(key, value, count) and key != "num_kv_shared_layers":
            sub[key] = len(keep)  # another stack of the same length (`decoder_layers`), or the count itself
            continue                   # under its own name (xLSTM's `num_blocks`)
        if "layer" not in key and _per_layer_list(key, value, count):
            sub[key] = [value[i] for i in keep]  # a per-layer list named for what it holds (`intermediate_size`)
            continue
        if "layer" not in key:
            continue
        if isinstance(value, (list, tuple)) and list(value) == list(range(count)):
            sub[key] = list(range(len(keep)))  # every layer by number (Llama-4's `moe_layers`)
        elif isinstance(value, (list, tuple)) and len(value) == count:
            sub[key] = [value[i] for i in keep]
        elif isinstance(value, (list, tuple)) and all(_is_index(v, count) for v in value):
            sub[key] = [keep.index(v) for v in value if v in keep]  # layer numbers (`cross_attention_layers`)
        elif isinstance(value, dict) and value and all(str(k).isdigit() and int(k) < count for k in value):
            sub[key] = {new: value[k] for k in value for new, old in enumerate(keep) if int(k) == old}
    sub[count_key] = len(keep)


#: A list config value with this many entries or more, as many as the layers, is taken to be
#: per layer whatever its name; the copy is kept only if it comes out faithful anyway.
_PER_LAYER_LIST = 4


def _per_layer_list(key: str, value, count: int) -> bool:
    """Whether config ``key`` holds one entry per layer of a stack of ``count`` layers."""
    return (isinstance(value, (list, tuple)) and len(value) == count
            and ("layer" in key or count >= _PER_LAYER_LIST))


def _kv_shared_layers(data: dict) -> int:
    """How many last layers reuse another layer's K/V (``num_kv_shared_layers``; 0 when unset)."""
    shared = data.get("num_kv_shared_layers")
    return shared if isinstance(shared, int) and not isinstance(shared, bool) and shared > 0 else 0


def _is_count(key: str, value, count: int) -> bool:
    """Whether config ``key`` is a layer count equal to ``count``."""
    return (value == count and isinstance(value, int) and not isinstance(value, bool)
            and key.rstrip("s").endswith(("layer", "block")))


def _is_index(value, count: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count


def _dtype(root: nn.Module) -> torch.dtype:
    """The dtype the model was built in (its config's, as :mod:`.build` reads it), not its first
    parameter's: a tower kept in float32 must not turn the whole copy to float32 (bf16-only
    expert kernels would then fail on the copy alone)."""
    config = getattr(root, "config", None)
    if config is not None:
        return config_dtype(config)
    return next((p.dtype for p in root.parameters() if p.is_floating_point()), torch.bfloat16)


def _build(cls: type, config, dtype: torch.dtype) -> nn.Module:
    from transformers.initialization import meta_device_safe_creation_ops

    with torch.device("meta"), meta_device_safe_creation_ops():
        module = cls._from_config(config, dtype=dtype)
    assert_no_storage(module, "shrunk copy")
    return module


def _faithful(graph, module: nn.Module, lists: dict[str, tuple[int, ...]], *, in_order: bool = False) -> bool:
    """Whether the copy has exactly the model's module classes and, per shrunk list, its set
    of block structures; ``in_order``: moreover each layer of the copy has the structure of
    the model's layer it stands for (a copy whose config had a layer number moved)."""
    copy = ModuleGraph(module)
    if {i.qualname for i in copy} != {i.qualname for i in graph}:
        return False
    for path, keep in lists.items():
        if path not in copy.nx or len(copy.info(path).children) != len(keep):
            return False
        want = {graph.info(c).structure_key for c in graph.info(path).children.values()}
        have = {copy.info(c).structure_key for c in copy.info(path).children.values()}
        if want != have:
            return False
        if in_order and [copy.info(copy.info(path).children[str(j)]).structure_key for j in range(len(keep))] != [
                graph.info(graph.info(path).children[str(i)]).structure_key for i in keep]:
            return False
    return True


def _moved_boundaries(graph, config, keypath: tuple[str, ...], plan: tuple[int, tuple[int, ...]]):
    """Config rewrites that move a layer number to where its structure starts in the copy, one
    key at a time: a whole-number key (not a count, not a flag) of the owning config equal to
    the first layer of a structure becomes the position of the copy's first layer of that
    structure (DeepSeek-V3's ``first_k_dense_replace=3``, its first MoE layer, becomes 1 when
    the copy keeps layers 0 and 60). The copy is kept only when each of its layers then has
    the structure of the layer it stands for (:func:`_faithful` ``in_order``), which a key
    that does not place structures cannot give."""
    count, keep = plan
    sub = _sub_config(config, keypath)
    list_path = next((lp for lp, kp, n in _candidate_lists(graph, config) if kp == keypath and n == count), None)
    if list_path is None:
        return
    kinds = [graph.info(graph.info(list_path).children[str(i)]).structure_key for i in range(count)]
    starts = {kinds.index(k) for k in set(kinds)} - {0}
    for key, value in sorted(sub.to_dict().items()):
        if (isinstance(value, int) and not isinstance(value, bool) and value in starts
                and key != _count_key(sub) and not _is_count(key, value, count)):
            moved = next((j for j, i in enumerate(keep) if kinds[i] == kinds[value]), None)
            if moved is not None and moved != value:
                yield {keypath: {key: moved}}
