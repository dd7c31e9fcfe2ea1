"""Rule plugins through the ``archlint.rules`` entry-point group.

The example plugin (examples/archlint-plugin-example) is really installed -- ``pip install
--target`` into a temporary directory, once per session -- and archlint runs in a
subprocess with that directory on ``PYTHONPATH``; this process's rule list is untouched,
so no other test depends on whether a plugin is installed. Broken plugins are installed
by hand (a ``*.dist-info`` with ``entry_points.txt`` is all importlib.metadata reads).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from support import REPO, run_process

from archlint.rules import builtin_rules
from archlint.rules.plugins import load_plugin_rules

EXAMPLE = REPO / "examples" / "archlint-plugin-example"
UNPADDED = "archlint_plugin_example.zoo:UnpaddedTinyLM"

BROKEN_MODULES = {
    "broken_on_import.py": 'raise RuntimeError("boom at import")\n',
    "broken_rules.py": textwrap.dedent('''
        from archlint.findings import Severity
        from archlint.rules import Rule

        NOT_A_RULE = 42

        class Clash(Rule):
            """Reuses a built-in code."""
            code = "LORA001"
            name = "clashing-rule"
            severity = Severity.ERROR

            def check(self, ctx):
                return []

        class NoCheck(Rule):
            """Forgets to implement check()."""
            code = "BRK002"
            name = "no-check"
            severity = Severity.INFO
    '''),
}
BROKEN_ENTRY_POINTS = {
    "raises": "broken_on_import:Anything",
    "not-a-rule": "broken_rules:NOT_A_RULE",
    "clash": "broken_rules:Clash",
    "no-check": "broken_rules:NoCheck",
}


def install_broken(directory: Path) -> Path:
    for name, text in BROKEN_MODULES.items():
        (directory / name).write_text(text)
    dist = directory / "archlint_broken_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: archlint-broken-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[archlint.rules]\n" + "".join(f"{k} = {v}\n" for k, v in BROKEN_ENTRY_POINTS.items()))
    return directory


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory) -> str:
    """PYTHONPATH with the example plugin installed by pip, and the broken plugins (then the
    inherited PYTHONPATH)."""
    source = tmp_path_factory.mktemp("src") / "archlint-plugin-example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(target), str(source)], check=True, capture_output=True, text=True)
    assert (target / "archlint_plugin_example").is_dir()
    broken = install_broken(tmp_path_factory.mktemp("broken"))
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return os.pathsep.join([str(target), str(broken), *inherited])


@pytest.mark.slow
def test_rules_lists_the_plugin_with_its_origin_and_reports_broken_ones(plugin_path):
    out = run_process("rules", env={"PYTHONPATH": plugin_path})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    origin = slice(lines[0].index("origin"), lines[0].index("what it flags"))  # a column (severity cells wrap)
    row = next(line for line in lines if line.startswith("PAD001"))
    assert row.split()[1:3] == ["unpadded-vocab", "warning"] and row[origin].split() == ["archlint-plugin-example"]
    assert next(line for line in lines if line.startswith("LORA001"))[origin].split() == ["archlint"]
    for name in BROKEN_ENTRY_POINTS:
        assert f"archlint: plugin {name!r} from archlint-broken-plugins skipped" in out.stderr, out.stderr
    assert "boom at import" in out.stderr and "already used by archlint" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_plugin_can_be_ignored_and_broken_plugins_do_not_stop_a_lint(plugin_path, tmp_path):
    """``test_plugin_examples_pass`` shows PAD001 fires on this target; ``--ignore`` silences
    it, and so does the project configuration, which knows the plugin's code."""
    config = tmp_path / "archlint.toml"
    config.write_text('ignore = ["PAD001"]\n')
    by_config = run_process(UNPADDED, "--format", "json", "--config", str(config), env={"PYTHONPATH": plugin_path})
    assert by_config.returncode == 0, by_config.stderr
    assert "PAD001" not in json.loads(by_config.stdout)["rules"]

    ignored = run_process(UNPADDED, "--format", "json", "--ignore", "PAD001", env={"PYTHONPATH": plugin_path})
    report = json.loads(ignored.stdout)
    assert ignored.returncode == 0, ignored.stderr
    assert "PAD001" not in report["rules"] and report["results"][0]["findings"] == []
    assert report["results"][0]["model"]["class"] == "UnpaddedTinyLM"
    assert "'raises' from archlint-broken-plugins skipped" in ignored.stderr


RUN_EXAMPLES = """
import json, sys
from archlint import lint
from archlint.rules import all_rules
out = []
for rule in all_rules():
    if rule.origin != "archlint-plugin-example":
        continue
    for valid, examples in ((True, rule.VALID), (False, rule.INVALID)):
        for ex in examples:
            result = lint(ex.target, select=[rule.code]).results[0]
            found = [f for f in result.findings if f.code == rule.code]
            out.append({"code": rule.code, "target": ex.target, "valid": valid, "expected": sorted(ex.paths),
                        "error": str(result.error) if result.error else None, "rule_errors": result.rule_errors,
                        "paths": sorted({p for f in found for p in f.paths}),
                        "fix_ok": not ex.fix or any(f.fix and ex.fix in f.fix.title + f.fix.detail for f in found)})
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
def test_plugin_examples_pass(plugin_path):
    """The plugin's own VALID/INVALID examples, run like the built-in rules' (test_rule_examples.py):
    PAD001 fires on ``gpt2`` and ``UnpaddedTinyLM`` at exactly the expected paths, with its fix."""
    proc = subprocess.run([sys.executable, "-c", RUN_EXAMPLES], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": plugin_path})
    assert proc.returncode == 0, proc.stderr
    cases = json.loads(proc.stdout)
    assert {c["valid"] for c in cases} == {True, False} and len(cases) == 4
    assert {c["target"]: c["paths"] for c in cases if not c["valid"]} == {
        "gpt2": ["lm_head", "transformer.wte"], UNPADDED: ["embed", "head"]}
    for case in cases:
        assert case["error"] is None and not case["rule_errors"], case
        assert case["paths"] == ([] if case["valid"] else case["expected"]), case
        assert case["fix_ok"], case


# -- the loader itself, in process, with entry points given directly --------------------


def test_loader_skips_and_logs_each_broken_entry_point(tmp_path, monkeypatch, caplog):
    install_broken(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    good = EntryPoint(name="good", value="good_rule:Good", group="archlint.rules")
    (tmp_path / "good_rule.py").write_text(textwrap.dedent('''
        from archlint.findings import Severity
        from archlint.rules import Rule

        class Good(Rule):
            """A fine rule."""
            code = "GOOD001"
            name = "good-rule"
            severity = Severity.INFO

            def check(self, ctx):
                return []
    '''))
    broken = [EntryPoint(name=k, value=v, group="archlint.rules") for k, v in BROKEN_ENTRY_POINTS.items()]
    monkeypatch.setattr("archlint.rules.plugins.entry_points", lambda group: [*broken, good])
    with caplog.at_level("WARNING", logger="archlint.plugins"):
        rules, problems = load_plugin_rules(builtin_rules())
    assert [r.code for r in rules] == ["GOOD001"]
    reasons = {p.entry_point: p.reason for p in problems}
    assert set(reasons) == set(BROKEN_ENTRY_POINTS)
    assert reasons["raises"].startswith("import failed: RuntimeError: boom at import")
    assert "not an archlint Rule subclass" in reasons["not-a-rule"]
    assert reasons["clash"] == "code LORA001 is already used by archlint"
    assert "does not implement check()" in reasons["no-check"]
    assert len(caplog.records) == 4


def test_two_plugins_with_one_code_keep_the_first(tmp_path, monkeypatch):
    (tmp_path / "twins.py").write_text(textwrap.dedent('''
        from archlint.findings import Severity
        from archlint.rules import Rule

        class A(Rule):
            """First."""
            code = "TWN001"
            name = "twin-a"
            severity = Severity.INFO
            def check(self, ctx):
                return []

        class B(A):
            """Second."""
            name = "twin-b"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [EntryPoint(name=n, value=f"twins:{n.upper()}", group="archlint.rules") for n in ("a", "b")]
    monkeypatch.setattr("archlint.rules.plugins.entry_points", lambda group: eps)
    rules, problems = load_plugin_rules(builtin_rules())
    assert [r.__name__ for r in rules] == ["A"]
    assert problems[0].entry_point == "b" and "code TWN001 is already used" in problems[0].reason
