"""Suppressions: inline ``# archlint: ignore[CODES] reason`` pragmas and config per-module-ignores.

A pragma is read from the source of the model's own classes (any class in the MRO of a
module in the tree). It counts in two places:

* on a ``class`` line (or its multi-line header): every module of that class, and what is
  inside it;
* on a ``self.<name> = …`` statement in one of a class's methods (any line of the
  statement): the submodule ``<name>`` of every module of that class, and what is inside it.

Codes are required (codes, prefixes or rule names); the reason after the bracket is free
text. A suppression removes the covered paths from a finding; a finding left with no path
disappears. What each suppression removed is kept (:class:`Suppressions`): the ARCH001
rule, which runs after suppression, reads it.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import re
import sys
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from .config import ModuleIgnore
from .findings import Finding, collapse_paths
from .selection import selector_codes

_MARKER = "archlint:"
_PRAGMA = re.compile(r"#\s*archlint:\s*(?P<body>.*)$")
_IGNORE = re.compile(r"ignore\[(?P<codes>[^\]]*)\]\s*(?P<reason>.*)$")


@dataclass(frozen=True)
class Pragma:
    """One ``# archlint:`` comment and the module subtrees it covers in this model."""

    file: str
    line: int
    text: str
    codes: frozenset[str] = frozenset()
    selectors: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()  # module paths it names; their subtrees are covered
    module_class: str = ""
    problem: str = ""  # set when the pragma cannot work: malformed, misplaced, unknown code

    def covers(self, code: str, path: str) -> bool:
        return code in self.codes and any(path == r or path.startswith(r + ".") for r in self.roots)

    @property
    def where(self) -> str:
        return f"{display_path(self.file)}:{self.line}"


def display_path(file: str) -> str:
    """``file`` relative to the current directory when it is inside it, else absolute."""
    relative = os.path.relpath(file)
    return file if relative.startswith("..") else relative


def apply(findings: Sequence[Finding], suppressors: Sequence) -> tuple[list[Finding], set[int]]:
    """Remove every path a suppressor covers; return the kept findings and the used suppressors' indices."""
    used: set[int] = set()
    kept: list[Finding] = []
    for f in findings:
        remaining = []
        for path in f.paths:
            hits = [i for i, s in enumerate(suppressors) if s.covers(f.code, path)]
            used.update(hits)
            if not hits:
                remaining.append(path)
        if len(remaining) == len(f.paths):
            kept.append(f)
        elif remaining:
            derived = f.pattern == collapse_paths(f.paths)
            kept.append(dataclasses.replace(f, paths=tuple(remaining), pattern="" if derived else f.pattern))
    return kept, used


@dataclass(frozen=True)
class Suppressions:
    """What the suppressions of one lint did. ``broken``: pragmas that cannot work
    (malformed, misplaced, unknown code). ``unused``: pragmas and per-module-ignores
    entries that removed nothing although a code they name ran (a code that did not run
    cannot be judged unused)."""

    broken: tuple[Pragma, ...] = ()
    unused: tuple[Pragma | ModuleIgnore, ...] = ()


def suppress(findings: Sequence[Finding], graph, ignores: Sequence[ModuleIgnore],
             ran: Iterable[str]) -> tuple[list[Finding], Suppressions]:
    """Apply the model's pragmas and ``ignores`` to ``findings`` (of the codes that ``ran``)."""
    ran = set(ran)
    pragmas = find_pragmas(graph) if graph is not None else []
    suppressors = [*(p for p in pragmas if not p.problem), *ignores]
    kept, used = apply(findings, suppressors)
    unused = tuple(s for i, s in enumerate(suppressors) if i not in used and s.codes & ran)
    return kept, Suppressions(tuple(p for p in pragmas if p.problem), unused)


# -- reading pragmas --------------------------------------------------------------------


def find_pragmas(graph) -> list[Pragma]:
    """Every pragma in the source files of the model's classes, attached to this model's modules."""
    classes: dict[type, list] = {}
    for info in graph:
        classes.setdefault(type(info.module), []).append(info)
    keyed: dict[tuple[str, str], list] = {}  # (file, qualname) -> modules of that class or a subclass
    for cls, infos in classes.items():
        for klass in cls.__mro__:
            file = _source_file(klass)
            if file:
                keyed.setdefault((file, klass.__qualname__), []).extend(infos)
    pragmas = []
    for file in sorted({f for f, _ in keyed}):
        for line, text, anchor in _file_pragmas(file, _mtime(file)):
            if (pragma := _attach(file, line, text, anchor, keyed)) is not None:
                pragmas.append(pragma)
    return pragmas


def _attach(file: str, line: int, text: str, anchor, keyed) -> Pragma | None:
    """The pragma with the modules it covers; ``None`` when it belongs to a class this model lacks."""
    pragma = Pragma(file, line, text)
    if anchor is not None:
        qualname, attr = anchor
        if (file, qualname) not in keyed:
            return None  # another model's class in a shared file: not ours to judge
        infos = keyed[(file, qualname)]
        if attr is None:
            roots, cls_name = [i.path for i in infos], qualname.rsplit(".", 1)[-1]
        else:
            owners = [i for i in infos if attr in i.children]
            roots = [i.children[attr] for i in owners]
            cls_name = type(owners[0].module.get_submodule(attr)).__name__ if owners else ""
        pragma = dataclasses.replace(pragma, roots=tuple(dict.fromkeys(roots)), module_class=cls_name)
    m = _IGNORE.match(_PRAGMA.match(text)["body"].strip())
    selectors = tuple(s.strip() for s in m["codes"].split(",") if s.strip()) if m else ()
    if not selectors:
        return dataclasses.replace(pragma, problem="is malformed: write `# archlint: ignore[CODE, ...] reason`")
    pragma = dataclasses.replace(pragma, selectors=selectors)
    unknown = [s for s in selectors if not selector_codes(s)]
    if unknown:
        return dataclasses.replace(pragma, problem=f"names unknown rule code {unknown[0]!r}")
    if anchor is None:
        return dataclasses.replace(pragma, problem="is misplaced: put it on a class line or a `self.<name> = ...` line")
    return dataclasses.replace(pragma, codes=frozenset().union(*(selector_codes(s) for s in selectors)))


def _source_file(cls: type) -> str | None:
    module = getattr(cls, "__module__", "") or ""
    if module == "builtins" or module.startswith("torch."):
        return None
    file = getattr(sys.modules.get(module), "__file__", None)
    return os.path.realpath(file) if file and file.endswith(".py") else None


def _mtime(file: str) -> tuple[int, int]:
    try:
        st = os.stat(file)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


@cache
def _file_pragmas(file: str, stamp: tuple[int, int]) -> tuple[tuple[int, str, tuple[str, str | None] | None], ...]:
    """``(line, comment, anchor)`` for each pragma of ``file``; anchor = (class qualname, attribute or None)."""
    try:
        with open(file, encoding="utf-8") as fh:
            source = fh.read()
    except (OSError, UnicodeDecodeError):
        return ()
    if _MARKER not in source:
        return ()
    try:
        comments = [
            (tok.start[0], tok.string)
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT and _PRAGMA.match(tok.string)
        ]
        tree = ast.parse(source)
    except (SyntaxError, tokenize.TokenError):
        return ()
    anchors = _anchors(tree)
    return tuple((line, text, anchors.get(line)) for line, text in comments)


def _anchors(tree: ast.Module) -> dict[int, tuple[str, str | None]]:
    """Line -> (class qualname, attribute): class headers and ``self.<name> = …`` statements."""
    out: dict[int, tuple[str, str | None]] = {}

    def visit(node, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                qualname = f"{prefix}{child.name}"
                header_end = max(child.lineno, child.body[0].lineno - 1) if child.body else child.lineno
                for line in range(child.lineno, header_end + 1):
                    out[line] = (qualname, None)
                for item in child.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        _self_assignments(item, qualname, out)
                visit(child, qualname + ".")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}{child.name}.<locals>.")

    visit(tree, "")
    return out


def _self_assignments(func, qualname: str, out: dict) -> None:
    if not func.args.args:
        return
    me = func.args.args[0].arg  # "self", whatever it is called
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            targets = node.targets
        else:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                    out.setdefault(line, (qualname, t.attr))
