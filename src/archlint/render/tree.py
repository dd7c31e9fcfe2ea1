"""The collapsed module tree of a report (plain data) with findings placed on its nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape

from ..findings import Finding


def marked_tree(tree: dict[str, Any], findings: Iterable[Finding]) -> dict[str, Any]:
    """A copy of ``tree`` where each node has ``findings``: those with a path at this node."""
    at: dict[str, list[Finding]] = {}
    for f in findings:
        for p in f.paths:
            at.setdefault(p, []).append(f)

    def visit(node):
        here = {id(f): f for p in node["paths"] for f in at.get(p, ())}
        children = [visit(c) for c in node["children"]]
        return {**node, "findings": list(here.values()), "children": children,
                "flagged": bool(here) or any(c["flagged"] for c in children)}

    return visit(tree)


def tree_lines(tree: dict[str, Any], findings: Iterable[Finding]) -> list[str]:
    """Rich-markup lines: ``├── layers [0-34] ×35 Gemma4TextDecoderLayer ◀ LORA001``."""
    lines: list[str] = []

    def visit(node, prefix: str, last: bool, top: bool):
        times = f" ×{node['repeat']}" if node["repeat"] > 1 else ""
        label = f"{escape(node['name'])}{times}"
        codes = sorted({f.code for f in node["findings"]})
        marks = f" [bold red]◀ {' '.join(codes)}[/]" if codes else ""
        if top:
            lines.append(f"[bold]{label}[/]{marks}")
        else:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label} [dim]{escape(node['class'])}[/]{marks}")
        inner = "" if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(node["children"]):
            visit(child, inner, i == len(node["children"]) - 1, False)

    visit(marked_tree(tree, findings), "", True, True)
    return lines
