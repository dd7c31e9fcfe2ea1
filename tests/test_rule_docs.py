"""The rule reference in rules/ is generated from the docstrings and must not go stale."""

from __future__ import annotations

from support import REPO

from archlint.docs import page_name, rule_markdown
from archlint.rules import builtin_rules

PAGES = REPO / "rules"
REGENERATE = "regenerate with `python -m archlint.docs rules`"


def test_every_rule_has_a_current_page():
    for rule in builtin_rules():
        page = PAGES / page_name(rule)
        assert page.is_file(), f"{page.name} is missing; {REGENERATE}"
        assert page.read_text(encoding="utf-8") == rule_markdown(rule), f"{page.name} is stale; {REGENERATE}"


def test_no_page_without_a_rule():
    expected = {page_name(r) for r in builtin_rules()} | {"README.md"}
    assert {p.name for p in PAGES.glob("*.md")} == expected
