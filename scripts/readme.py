"""Regenerate the generated parts of README.md: the output excerpt and the rule table.

    python scripts/readme.py            # rewrite README.md
    python scripts/readme.py --check    # exit 1 if README.md is stale

The excerpt is the first lines of what Quick start command 1 prints
(``archlint fixtures/configs/google__gemma-4-E2B-it`` at the width a pipe gets, 100
columns, no colour); the rule table is built from the rules' metadata. Each lives between
``<!-- scripts/readme.py: NAME -->`` and ``<!-- end -->``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EXCERPT_TARGET = "fixtures/configs/google__gemma-4-E2B-it"
EXCERPT_LINES = 37


def excerpt(report) -> str:
    """The first lines of the text report of ``report``, as a fenced block."""
    from archlint.findings import Severity
    from archlint.render import RenderOptions, render

    text = render(report, "text", RenderOptions(color=False, width=100, fail_on=Severity.WARNING))
    lines = text.rstrip("\n").splitlines()
    summary = lines[len(lines) - lines[::-1].index(""):]  # after the last blank line
    shown = lines[:EXCERPT_LINES]
    if len(lines) > EXCERPT_LINES:
        shown += ["  …", "", *summary]
    return "```\n" + "\n".join(shown) + "\n```"


def rule_table() -> str:
    from archlint.docs import page_name
    from archlint.rules import builtin_rules

    rows = ["| code | name | severity | what it flags |", "|---|---|---|---|"]
    for rule in builtin_rules():
        severity = f"{rule.severity}" + (f" ({rule.severity_note})" if rule.severity_note else "")
        rows.append(f"| [{rule.code}](rules/{page_name(rule)}) | {rule.name} | {severity} | {rule.summary()} |")
    return "\n".join(rows)


def lint_excerpt_target():
    from archlint import lint

    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return lint(EXCERPT_TARGET)
    finally:
        os.chdir(cwd)


def regenerate(text: str, parts: dict[str, str]) -> str:
    for name, body in parts.items():
        pattern = re.compile(rf"(<!-- scripts/readme\.py: {name} -->\n).*?(<!-- end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- scripts/readme.py: {name} --> block")
        text = pattern.sub(lambda m, body=body: m[1] + body + "\n" + m[2], text, count=1)
    return text


def main(argv: list[str]) -> int:
    current = README.read_text(encoding="utf-8")
    wanted = regenerate(current, {"excerpt": excerpt(lint_excerpt_target()), "rules": rule_table()})
    if "--check" in argv:
        if wanted != current:
            print("README.md is stale: run python scripts/readme.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
