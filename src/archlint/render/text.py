"""``--format text``: the terminal report, grouped by code and module pattern.

Per target, in order of importance: the header (what was built, and why that class), the
verdict of the user's LoRA plan or the recipes' works/breaks table, then the findings,
errors before warnings before infos. Every line is wrapped to the width with a hanging
indent; a long ``target_modules`` regex is split at its ``|`` alternatives into Python
string pieces (still one regex when pasted) and printed once per target.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..findings import Finding, Severity
from ..report import Report, TargetResult
from .load_time import checkpoint_lines, quantization_lines
from .plans import plan_lines
from .tree import tree_lines

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
DEFAULT_WIDTH = 100
MIN_WIDTH = 40

MESSAGE = " " * 10  # where a code block's messages start
PATTERN = " " * 12
FIX_BODY = " " * 14


class _Out:
    """Lines wrapped to ``width`` with a hanging indent, styles kept across the wrap."""

    def __init__(self, options):
        self.width = max(MIN_WIDTH, options.width or DEFAULT_WIDTH)
        self.buffer = io.StringIO()
        self.console = Console(file=self.buffer, force_terminal=options.color, no_color=not options.color,
                               width=self.width + 20, highlight=False, soft_wrap=True)

    def line(self, first: str, body: Text | str, rest: str | None = None) -> None:
        """``first`` then ``body``; continuation lines start with ``rest`` (default: spaces as wide as ``first``)."""
        if isinstance(body, str):
            body = Text.from_markup(body)
        rest = " " * len(first) if rest is None else rest
        if not body.plain:
            self.console.print(Text(first))
            return
        head = body.wrap(self.console, max(self.width - len(first), 10), overflow="fold")[0]
        head.rstrip()
        self.console.print(Text(first) + head)
        tail = body[len(head.plain):]
        tail = tail[len(tail.plain) - len(tail.plain.lstrip(" ")):]
        if not tail.plain:
            return
        for piece in tail.wrap(self.console, max(self.width - len(rest), 10), overflow="fold"):
            piece.rstrip()
            self.console.print(Text(rest) + piece)

    def blank(self) -> None:
        self.console.print()

    def text(self) -> str:
        return self.buffer.getvalue()


def render(report: Report, options) -> str:
    out = _Out(options)
    for result in report.results:
        _target(out, result, options)
    if not options.quiet:
        _summary(out, report, options)
    return out.text()


def _target(out: _Out, result: TargetResult, options) -> None:
    if result.error:
        _not_analysed(out, result, cause_here=not options.errors_on_stderr)
        return
    _header(out, result)
    shown = [f for f in result.findings if not options.quiet or (options.fail_on and f.severity >= options.fail_on)]
    if not options.quiet:
        for line in plan_lines(result.plans):  # the user's LoRA plan, or the recipes' works/breaks table
            _markup_line(out, line)
        for line in quantization_lines(result.quantization.to_dict() if result.quantization else None):
            _markup_line(out, line)  # the footprint table per tower
        for line in checkpoint_lines(result.checkpoint.to_dict() if result.checkpoint else None):
            _markup_line(out, line)
    for rule in result.rule_errors:
        out.line("  ", f"[bold red]rule {escape(rule['code'])} crashed:[/] {escape(rule['message'])}")
    by_code: dict[str, list[Finding]] = defaultdict(list)
    for f in shown:
        by_code[f.code].append(f)
    ordered = sorted(by_code.items(), key=lambda kv: (-max(f.severity for f in kv[1]), kv[0]))
    printed_regexes: dict[str, str] = {}
    for code, findings in ordered:
        _code_block(out, code, findings, options, printed_regexes)
    if options.tree and result.tree is not None:
        for line in tree_lines(result.tree, result.findings):
            _markup_line(out, "  " + line)
    if not shown and not options.quiet:
        out.line("  ", "[green]no findings[/]")
    out.blank()


def _not_analysed(out: _Out, result: TargetResult, *, cause_here: bool = False) -> None:
    """``✗ TARGET  not analysed (kind; ...)``: the target's name is never broken unless it alone
    is wider than the width; when it does not fit beside the verdict, it has a line of its own.
    With ``cause_here`` (a report written to a file) the cause and what to do follow, as
    the stderr line says them; otherwise the verdict points to stderr."""
    mark, name = "✗ ", result.target
    where = "below" if cause_here else "on stderr"
    verdict = f"not analysed ([red]{escape(result.error.kind)}[/]; the cause and what to do are {where})"
    first_word = "  not"
    if len(mark) + len(name) + len(first_word) <= out.width:
        out.line("", Text.from_markup("[bold red]✗[/] ") + Text(name, style="bold")
                 + Text.from_markup(f"  {verdict}"), rest="  ")
    else:
        if len(mark) + len(name) <= out.width:
            out.console.print(Text.from_markup("[bold red]✗[/] ") + Text(name, style="bold"))
        else:  # the mark alone, then the name from the first column, folded only if wider than the width
            out.console.print(Text.from_markup("[bold red]✗[/]"))
            for i in range(0, len(name), out.width):
                out.console.print(Text(name[i:i + out.width], style="bold"))
        out.line("  ", verdict)
    if cause_here:
        out.line("  ", escape(result.error_cause))
    out.blank()


def _header(out: _Out, result: TargetResult) -> None:
    m = result.model
    out.line("", f"[bold]{escape(result.target)}[/]", rest="  ")
    head = "" if m.head else " · [yellow]no task head (AutoModel)[/]"
    why = f" [dim](why this class: {escape(m.class_reason)})[/]" if m.class_reason else ""
    out.line("  ", f"{escape(m.class_name)}{f' ({escape(m.model_type)})' if m.model_type else ''} · "
                   f"{_params(m.parameters)} parameters · {m.modules:,} modules{head}{why}")


def _markup_line(out: _Out, line: str) -> None:
    """A table-like line: continuation lines hang under its last column (or 4 in)."""
    text = Text.from_markup(line)
    plain = text.plain
    indent = len(plain) - len(plain.lstrip(" "))
    columns = [m.end() for m in re.finditer(r"\S  +(?=\S)", plain[: out.width // 2])]
    hang = columns[-1] if columns and columns[-1] > indent else indent + 4
    out.line(" " * indent, text[indent:], rest=" " * hang)


def _code_block(out: _Out, code: str, findings: list[Finding], options, printed: dict[str, str]) -> None:
    worst = max(f.severity for f in findings)
    total = sum(f.count for f in findings)
    first = findings[0]
    if len(findings) > 1:
        unit = f"{len(findings)} findings at {total} modules"
    else:
        unit = f"at {total} module{'s' * (total != 1)}"
    _severity_line(out, worst, code, first, total, unit)
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
        out.line(MESSAGE, Text(message))
        for f in group[:budget]:
            out.line(PATTERN, Text.from_markup(f"[bold]{escape(f.pattern or '(model)')}[/] "
                                               f"[dim]×{f.count} {escape(f.module_class)}[/]"), rest=PATTERN + "  ")
        budget -= len(group[:budget])
    if len(findings) > options.max_patterns:
        out.line(MESSAGE, f"[dim]… {len(findings) - options.max_patterns} more patterns "
                          "(--format json lists every path)[/]")
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix))
    for fix in fixes[:2]:
        out.line(MESSAGE, Text.from_markup(f"[green]fix:[/] {escape(fix.title)}"), rest=MESSAGE + "     ")
        for line in fix_lines(fix.detail, out.width - len(FIX_BODY), printed, code):
            _fix_line(out, line)


def _severity_line(out: _Out, worst: Severity, code: str, first: Finding, total: int, unit: str) -> None:
    body = Text.assemble((f"{worst!s:<7}", STYLE[worst]), " ", (code, "bold"), f" {first.name} ",
                         (f"{unit} · confidence {first.confidence}", "dim"))
    out.line("  ", body, rest=MESSAGE)


def _fix_line(out: _Out, line: str) -> None:
    stripped = line.lstrip(" ")
    indent = FIX_BODY + " " * (len(line) - len(stripped))
    rest = indent + ("# " if stripped.startswith("#") else "    ")
    out.line(indent, Text(stripped, style="green"), rest=rest)


_REGEX_ASSIGN = re.compile(r'^(?P<indent>\s*)(?P<lhs>\w+=)r"(?P<regex>(?:[^"\\]|\\.)*)"(?P<tail>.*)$')


def fix_lines(detail: str, room: int, printed: dict[str, str], code: str) -> list[str]:
    """A fix's lines with each long ``name=r"regex"`` split at ``|`` into string pieces, and a
    regex already printed for this target replaced by a pointer to where it was."""
    lines: list[str] = []
    for line in detail.splitlines():
        m = _REGEX_ASSIGN.match(line)
        if not m or len(line) <= room:
            lines.append(line)
            continue
        regex, indent, tail = m["regex"], m["indent"], m["tail"].strip()
        if regex in printed:
            rest = "  " + tail if tail else ""
            lines.append(f"{indent}{m['lhs']}<the regex of the {printed[regex]} fix above>{rest}")
            continue
        printed[regex] = code
        pieces = split_alternatives(regex, room - len(indent) - 11)
        if len(pieces) == 1:
            lines.append(f'{indent}{m["lhs"]}r"{regex}"')
            lines.extend([f"{indent}{tail}"] if tail else [])
            continue
        lines.append(f"{indent}{m['lhs']}(")
        lines.extend(f'{indent}    r"{piece}"' for piece in pieces)
        lines.append(f"{indent}){'  ' + tail if tail else ''}")
    return lines


def split_alternatives(regex: str, room: int) -> list[str]:
    """``regex`` cut before ``|`` characters (top level first, then inside groups) into
    pieces that each fit ``room``; joined again they are the same regex."""
    cuts = _bar_positions(regex)
    pieces, start = [], 0
    while len(regex) - start > room:
        fitting = [c for c in cuts if start < c <= start + room]
        if not fitting:
            later = [c for c in cuts if c > start]
            if not later:
                break
            fitting = later[:1]
        top = [c for c in fitting if cuts[c] == min(cuts[x] for x in fitting)]
        cut = top[-1] if top[-1] - start >= room // 3 else fitting[-1]
        pieces.append(regex[start:cut])
        start = cut
    pieces.append(regex[start:])
    return pieces


def _bar_positions(regex: str) -> dict[int, int]:
    """Index of each unescaped ``|`` outside character classes -> its group depth."""
    out, depth, i, in_class = {}, 0, 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|":
            out[i] = depth
        i += 1
    return out


_FOOTER_LIBRARIES = ("torch", "transformers", "peft", "huggingface_hub")


def _summary(out: _Out, report: Report, options) -> None:
    counts = report.counts()
    modules = sum(f.count for f in report.findings)
    parts = ", ".join(f"[{STYLE[s]}]{counts[str(s)]} {s}[/]" for s in sorted(Severity, reverse=True))
    targets = len(report.results)
    failed = f", [bold red]{len(report.errors)} not analysed[/]" if report.errors else ""
    fail_on = str(options.fail_on) if options.fail_on else "never"
    # the libraries every lint runs; the JSON, SARIF and HTML reports carry every predicted one
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items() if v and k in _FOOTER_LIBRARIES)
    out.line("", f"{len(report.findings)} findings ({parts}) at {modules:,} modules in {targets} "
                 f"target{'s' * (targets != 1)}{failed} [dim](a finding is one rule at one module pattern; "
                 f"fail-on: {fail_on}; {versions})[/]", rest="  ")


def _params(n: int) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
