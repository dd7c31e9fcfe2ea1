"""The rule reference: one Markdown page per rule, generated from its docstring.

``python -m archlint.docs rules/`` rewrites the pages; ``tests/test_rule_docs.py`` fails
when a page is stale or missing.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from .report import RULES_URL
from .rules import builtin_rules
from .rules.base import Rule

__all__ = ["RULES_URL", "page_name", "rule_markdown", "write_pages"]


def rule_markdown(rule: type[Rule]) -> str:
    sections = rule.sections()
    lines = [
        f"# {rule.code} {rule.name}",
        "",
        rule.summary(),
        "",
        f"- Default severity: **{rule.severity}**",
        f"- Confidence: {rule.confidence}",
        f"- Protects: {', '.join(rule.tools) or '—'}",
        f"- Origin: {rule.origin}",
        "",
    ]
    for heading, body in sections.items():
        lines += [f"## {heading}", "", _unindent(body), ""]
    if rule.INVALID or rule.VALID:
        lines += ["## Tested on", ""]
        for ex in rule.INVALID:
            where = ", ".join(f"`{p or '(model)'}`" for p in ex.paths)
            lines.append(f"- flags `{ex.target}`" + _with_plan(ex) + (f" at {where}" if where else ""))
        for ex in rule.VALID:
            lines.append(f"- passes `{ex.target}`" + _with_plan(ex) + (f" ({ex.note})" if ex.note else ""))
        lines.append("")
    return "\n".join(lines)


def _unindent(text: str) -> str:
    return textwrap.dedent(text).strip()


def page_name(rule: type[Rule]) -> str:
    return f"{rule.code}-{rule.name}.md"


def write_pages(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for rule in builtin_rules():  # plugins document themselves; `archlint explain` shows any rule
        path = directory / page_name(rule)
        path.write_text(rule_markdown(rule), encoding="utf-8")
        written.append(path)
    index = ["# archlint rules", "", "| code | name | severity | what it flags |", "|---|---|---|---|"]
    index += [f"| [{r.code}]({page_name(r)}) | {r.name} | {r.severity} | {r.summary()} |" for r in builtin_rules()]
    (directory / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return written


def _with_plan(example) -> str:
    return f" with the plan `{json.dumps(dict(example.plan))}`" if example.plan else ""


if __name__ == "__main__":
    for p in write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "rules")):
        print(p)
