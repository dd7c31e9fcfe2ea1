"""README.md for a newcomer: short, its generated parts current, every link alive."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest
from support import REPO, lint_cached

from archlint.rules import builtin_rules


def _script():
    spec = importlib.util.spec_from_file_location("readme_script", REPO / "scripts" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README = (REPO / "README.md").read_text(encoding="utf-8")


def _block(name: str) -> str:
    m = re.search(rf"<!-- scripts/readme\.py: {name} -->\n(.*?)\n<!-- end -->", README, re.S)
    assert m, f"README.md has no generated {name} block"
    return m[1]


def test_readme_is_short_and_has_two_quick_start_commands():
    assert len(README.splitlines()) <= 280  # a newcomer page; the census table is its longest part
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    code = quick.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2
    assert 'pip install torch==2.13.0 -e ".[peft]"' in commands[0]
    assert "archlint fixtures/configs/google__gemma-4-E2B-it" in commands[0]
    assert commands[1] == "bash .ci/run"


def test_rule_table_is_generated_from_the_rules_metadata():
    assert _block("rules") == _script().rule_table(), "stale: run python scripts/readme.py"


def test_output_excerpt_is_what_quick_start_prints():
    script = _script()
    report = lint_cached(script.EXCERPT_TARGET)
    assert _block("excerpt") == script.excerpt(report), "stale: run python scripts/readme.py"


@pytest.mark.parametrize("rule", builtin_rules(), ids=lambda r: r.code)
def test_a_rule_that_departs_from_its_default_severity_says_when(rule):
    source = inspect.getsource(inspect.getmodule(rule))
    others = {s for s in re.findall(r"Severity\.(ERROR|WARNING|INFO)", source)} - {rule.severity.name}
    if others:
        assert rule.severity_note, f"{rule.code} also reports {others}: add a severity_note"


# -- links ---------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_readme_links_docs_pages():
    linked = {m[1] for m in LINK.finditer(README)}
    assert sum(target.startswith("docs/") for target in linked) >= 6
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in linked, f"docs/{page.name} is not linked from README.md"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_dead_links(document):
    dead = []
    for m in LINK.finditer(_without_code(document.read_text(encoding="utf-8"))):
        target = m[1]
        if re.match(r"^[a-z]+:", target):  # https:, mailto: - not checked offline
            continue
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            dead.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            dead.append(target)
    assert not dead, f"{document.name}: dead links {dead}"
