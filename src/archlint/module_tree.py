"""The collapsed module tree as plain data, for the report (``--tree``, the HTML page).

Siblings with the same pattern and the same structure collapse into one node
(``layers [0-34] ×35``); a node lists every real module path it stands for, so a finding's
paths can be placed on it without the live model.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def collapsed_tree(graph) -> dict[str, Any]:
    """``{"name", "class", "repeat", "paths", "children"}`` nested dicts, from a :class:`ModuleGraph`."""
    root = next(iter(graph.nx.nodes))
    return _node(graph, [root], graph.info(root).class_name or "model")


def _node(graph, paths: list[str], name: str) -> dict[str, Any]:
    info = graph.info(paths[0])
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for attr, child in info.children.items():
        child_info = graph.info(child)
        groups[(child_info.pattern, child_info.structure_key)].append(attr)
    children = []
    for attrs in groups.values():
        member_paths = [graph.info(p).children[a] for p in paths for a in attrs]
        node = _node(graph, member_paths, attrs[0] if len(attrs) == 1 else _ranges(attrs))
        node["repeat"] = len(attrs)
        children.append(node)
    return {"name": name, "class": info.class_name, "repeat": 1, "paths": list(paths), "children": children}


def _ranges(attrs: list[str]) -> str:
    """``[0-14,20]`` for numeric sibling names, else the names joined by commas."""
    if not all(a.isdigit() for a in attrs):
        return ",".join(attrs)
    nums = sorted(int(a) for a in attrs)
    spans, start, prev = [], nums[0], nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return "[" + ",".join(spans) + "]"
