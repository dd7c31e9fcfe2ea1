"""The import graph of src/archlint keeps the pipeline one-way.

resolve -> build -> graph -> facts -> rules -> report -> render: imports are read with
``ast`` from every module (function-level imports included; ``if TYPE_CHECKING:`` blocks
excluded, they never run). The graph has no cycle, so no function-level import can be
hiding one; renderers see only the report's data; rules never import each other; the
report's types and the renderers import neither torch nor transformers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "archlint"
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for every import statement of module ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, top)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    origin = ".".join([*base, child.module] if child.module else base)
                else:
                    origin = child.module or ""
                submodules = [f"{origin}.{a.name}" for a in child.names if f"{origin}.{a.name}" in MODULES]
                if len(submodules) < len(child.names):  # names defined by the module itself
                    found.append((origin, top))
                found.extend((m, top) for m in submodules)  # `from . import x`: the submodule x
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


IMPORTS = {name: _imports(name) for name in MODULES}


def _graph(*, module_level_only: bool = False) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for name, imports in IMPORTS.items():
        for target, top in imports:
            if target in MODULES and target != name and (top or not module_level_only):
                graph.add_edge(name, target)
    return graph


def _reach(start: str, *, module_level_only: bool) -> set[str]:
    return nx.descendants(_graph(module_level_only=module_level_only), start) | {start}


def _external(modules: set[str], *, module_level_only: bool) -> set[str]:
    return {target.split(".")[0] for m in modules for target, top in IMPORTS[m]
            if not target.startswith("archlint") and (top or not module_level_only)}


def test_the_parser_sees_the_imports_it_must():
    assert ("archlint.report", True) in IMPORTS["archlint.render.text"]
    assert any(t == "peft" and not top for t, top in IMPORTS["archlint.lora.oracle"])  # a deferred import


def test_no_import_cycles_anywhere():
    cycles = list(nx.simple_cycles(_graph()))
    shown = "; ".join(" -> ".join(c) for c in cycles[:5])
    assert cycles == [], f"import cycles (function-level imports included): {shown}"


@pytest.mark.parametrize("renderer", [m for m in MODULES if m.startswith("archlint.render")])
def test_renderers_see_only_the_report(renderer):
    reached = _reach(renderer, module_level_only=False)
    below = ("archlint.build", "archlint.probe", "archlint.lora", "archlint.facts", "archlint.rules", "archlint.graph",
             "archlint.api")
    forbidden = [m for m in reached if m.startswith(below)]
    assert forbidden == [], f"{renderer} reaches {sorted(forbidden)}"


def test_no_rule_imports_another_rule():
    rules = {m for m in MODULES if m.startswith("archlint.rules.") and m.rsplit(".", 1)[1] not in ("base", "plugins")}
    offenders = [(r, t) for r in rules for t, _ in IMPORTS[r] if t in rules and t != r]
    assert offenders == []


@pytest.mark.parametrize("module", ["archlint.report", "archlint.findings",
                                    *[m for m in MODULES if m.startswith("archlint.render")]])
def test_report_and_renderers_import_no_torch(module):
    reached = _reach(module, module_level_only=True)
    assert not _external(reached, module_level_only=True) & set(HEAVY), sorted(reached)


def test_structure_helpers_sit_below_the_rules():
    reached = _reach("archlint.structure", module_level_only=False)
    assert not [m for m in reached if m.startswith(("archlint.rules", "archlint.facts"))]


def test_facts_never_read_rules_and_lora_never_reads_facts():
    for start, forbidden in (("archlint.facts", ("archlint.rules", "archlint.api", "archlint.render")),
                             ("archlint.lora", ("archlint.facts", "archlint.rules", "archlint.render"))):
        modules = [m for m in MODULES if m == start or m.startswith(start + ".")]
        reached = set().union(*(_reach(m, module_level_only=False) for m in modules))
        assert not [m for m in reached if m.startswith(forbidden)], start


#: What a rule's source reads when it reads a fact the lint's worker computes ahead.
_READS_AHEAD = {"plans": ("ctx.plans", "outcome_of", "verified_fix", "training_steps", "peft_roles"),
                "quantization": ("ctx.quantization",)}


def test_every_rule_says_which_facts_computed_ahead_it_reads():
    """The rules run in the order of `Rule.reads_ahead` (the worker's facts as late as
    possible): a built-in rule says exactly what its source reads."""
    from archlint.rules import builtin_rules

    for rule in builtin_rules():
        source = MODULES[rule.__module__].read_text(encoding="utf-8")
        reads = {fact for fact, marks in _READS_AHEAD.items() if any(mark in source for mark in marks)}
        assert set(rule.reads_ahead) == reads, rule.code
