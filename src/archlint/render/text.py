"""``--format text``: the terminal report (rich), grouped by code and module pattern."""

from __future__ import annotations

import io
from collections import defaultdict

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from ..findings import Finding, Severity
from ..report import Report, TargetResult

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render(report: Report, options) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=options.color, no_color=not options.color,
                      width=options.width or 100, highlight=False, soft_wrap=True)
    for result in report.results:
        _target(console, result, options)
    if not options.quiet:
        _summary(console, report, options)
    return buffer.getvalue()


def _target(console: Console, result: TargetResult, options) -> None:
    if result.error:
        console.print(f"[bold red]✗[/] [bold]{escape(result.target)}[/]: {escape(result.error.message)}")
        return
    shown = [f for f in result.findings if not options.quiet or (options.fail_on and f.severity >= options.fail_on)]
    if not options.quiet:
        m = result.model
        head = "" if m.head else " · [yellow]no task head (AutoModel)[/]"
        console.print(
            f"[bold]{escape(result.target)}[/]  {m.class_name}"
            f"{f' ({m.model_type})' if m.model_type else ''} · {_params(m.parameters)} parameters · "
            f"{m.modules:,} modules{head}"
        )
    for rule in result.rule_errors:
        console.print(f"  [bold red]rule {rule['code']} crashed:[/] {escape(rule['message'])}")
    by_code: dict[str, list[Finding]] = defaultdict(list)
    for f in shown:
        by_code[f.code].append(f)
    for code, findings in by_code.items():
        _code_block(console, code, findings, options)
    if not options.quiet:
        for line in _plan_lines(result):  # the LoRA plan, or the recipes' works/breaks table
            console.print(line)
    if options.tree and result.graph is not None:
        console.print(_tree(result))
    if not shown and not options.quiet:
        console.print("  [green]no findings[/]")
    console.print()


def _plan_lines(result: TargetResult) -> list[str]:
    """A cached result carries its plan lines; a fresh one has its evaluations."""
    if result.plan_lines is not None:
        return result.plan_lines
    if not result.plans:
        return []
    from ..plan.text import plan_lines

    return plan_lines(result.plans)


def _code_block(console: Console, code: str, findings: list[Finding], options) -> None:
    worst = max(f.severity for f in findings)
    total = sum(f.count for f in findings)
    first = findings[0]
    where = f" in {len(findings)} patterns" if len(findings) > 1 else ""
    console.print(
        f"  [{STYLE[worst]}]{str(worst):<7}[/] [bold]{code}[/] {first.name} "
        f"[dim]×{total}{where} · confidence {first.confidence}[/]"
    )
    by_message: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_message[f.message].append(f)
    budget = options.max_patterns
    # Messages naming the recipes they break come first: that is what a user acts on.
    ordered = sorted(by_message.items(), key=lambda kv: (
        -max(len(f.details.get("breaks_recipes", ())) for f in kv[1]), -sum(f.count for f in kv[1])))
    for message, group in ordered:
        if budget <= 0:
            break
        console.print(f"          {escape(message)}")
        for f in group[:budget]:
            console.print(f"            [bold]{escape(f.pattern or '(model)')}[/] [dim]×{f.count} {escape(f.module_class)}[/]")
        budget -= len(group[:budget])
    if len(findings) > options.max_patterns:
        console.print(f"          [dim]… {len(findings) - options.max_patterns} more patterns (--format json lists every path)[/]")
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix))
    for fix in fixes[:2]:
        console.print(f"          [green]fix:[/] {escape(fix.title)}")
        for line in fix.detail.splitlines():
            console.print(Text("              " + line, style="green"))


def _summary(console: Console, report: Report, options) -> None:
    counts = report.counts()
    modules = {str(s): sum(f.count for f in report.findings if f.severity == s) for s in Severity}
    parts = [f"[{STYLE[s]}]{counts[str(s)]} {s}[/] [dim]({modules[str(s)]} modules)[/]" for s in sorted(Severity, reverse=True)]
    failed = f", [bold red]{len(report.errors)} failed[/]" if report.errors else ""
    fail_on = str(options.fail_on) if options.fail_on else "never"
    console.print(
        f"findings: {', '.join(parts)} in {len(report.results)} target{'s' if len(report.results) != 1 else ''}{failed} "
        f"[dim](fail-on: {fail_on}; versions: "
        + ", ".join(f"{k} {v}" for k, v in report.versions.items() if v) + ")[/]"
    )


def _params(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _tree(result: TargetResult) -> Tree:
    """The module tree with identical siblings collapsed (``layers.* ×30``) and findings marked."""
    graph = result.graph
    marks: dict[str, set[str]] = defaultdict(set)
    for f in result.findings:
        for p in f.paths:
            marks[p].add(f.code)
    root_path = next(iter(graph.nx.nodes))
    tree = Tree(f"[bold]{graph.info(root_path).class_name}[/]{_marks(marks[root_path])}")
    _grow(graph, root_path, tree, marks)
    return tree


def _grow(graph, path: str, branch: Tree, marks) -> None:
    info = graph.info(path)
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for attr, child in info.children.items():
        key = (graph.info(child).pattern, graph.info(child).skey)
        seen[key].append(attr)
    for (_, _), attrs in seen.items():
        child = info.children[attrs[0]]
        child_info = graph.info(child)
        group_paths = [info.children[a] for a in attrs]
        codes = set().union(*(marks[p] for p in group_paths))
        label = attrs[0] if len(attrs) == 1 else f"{_ranges(attrs)} ×{len(attrs)}"
        node = branch.add(f"{escape(label)} [dim]{child_info.class_name}[/]{_marks(codes)}")
        _grow(graph, child, node, _merged_marks(graph, group_paths, marks))


def _merged_marks(graph, paths, marks):
    """Marks of a collapsed group, keyed by the representative's descendant paths."""
    if len(paths) == 1:
        return marks
    rep = paths[0]
    merged = defaultdict(set, marks)
    for other in paths[1:]:
        for p, codes in list(marks.items()):
            if p.startswith(other + "."):
                merged[rep + p[len(other):]] |= codes
    return merged


def _ranges(attrs: list[str]) -> str:
    if not all(a.isdigit() for a in attrs):
        return ",".join(attrs)
    nums = sorted(int(a) for a in attrs)
    spans, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return "[" + ",".join(spans) + "]"


def _marks(codes: set[str]) -> str:
    return f" [bold red]◀ {' '.join(sorted(codes))}[/]" if codes else ""
