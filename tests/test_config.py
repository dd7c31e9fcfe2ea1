"""[tool.archlint] / archlint.toml: discovery, validation errors, selection layers, severities."""

from __future__ import annotations

import json
import textwrap

import pytest
from support import REPO, config, run_cli

from archlint import Severity, lint
from archlint.config import ConfigError, find_config, load_config
from archlint.lora.targets import written_entry_reaches as module_matches
from archlint.selection import Layer, selected_codes

WRAPPED = str(REPO / "fixtures/zoo/towers.py") + ":WrappedVisionTower"
GEMMA4 = config("google__gemma-4-E2B-it")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def cli(cwd, *args):
    return run_cli(*args, cwd=cwd)


# -- discovery ------------------------------------------------------------------------


def test_nearest_file_wins_and_the_walk_stops_at_the_repository_root(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.archlint]\nselect = ['LORA']\n")  # outside the repository
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) is None
    write(repo / "pyproject.toml", "[project]\nname = 'x'\n")  # no [tool.archlint]: does not count
    assert find_config(deep) is None
    write(repo / "pyproject.toml", "[tool.archlint]\nselect = ['NORM']\n")
    assert find_config(deep) == repo / "pyproject.toml"
    write(repo / "a" / "archlint.toml", "select = ['ATTN']\n")
    assert find_config(deep) == repo / "a" / "archlint.toml"
    assert load_config(start=deep).select == ("ATTN",)
    write(repo / "a" / "pyproject.toml", "[tool.archlint]\nselect = ['DIST']\n")
    assert find_config(deep) == repo / "a" / "archlint.toml"  # archlint.toml first in one directory


GEMMA4_TABLE = (  # an inline table: one line in the TOML file
    f'{{ target = "{GEMMA4}", trust-remote-code = true, target-modules = ["q_proj", "v_proj"], '
    """exclude-modules = '.*vision.*', target-parameters = ["experts.gate_up_proj"], """
    'peft-config = "adapter_config.json" }')


def test_models_are_strings_or_tables_and_paths_are_relative_to_the_file(tmp_path):
    cfg_file = write(tmp_path / "sub" / "archlint.toml", f"""\
        models = [
            "gemma4",
            "google/gemma-4-E2B-it",
            "nets/net.py:Net",
            {GEMMA4_TABLE},
        ]
        """)
    write(tmp_path / "sub" / "adapter_config.json", '{"peft_type": "LORA", "r": 16, "target_modules": ["o_proj"]}')
    cfg = load_config(cfg_file)
    gemma_type, hub, factory, local = cfg.models
    assert (gemma_type.location, hub.location) == ("gemma4", "google/gemma-4-E2B-it")
    assert factory.target == "nets/net.py:Net"
    assert factory.location == f"{tmp_path / 'sub' / 'nets' / 'net.py'}:Net"
    assert local.trust_remote_code and not hub.trust_remote_code
    assert local.plan.target_modules == ("q_proj", "v_proj")
    assert local.plan.exclude_modules == ".*vision.*"  # a string is one regex, as in PEFT
    assert local.plan.target_parameters == ("experts.gate_up_proj",)
    assert (local.plan.r, local.plan.source) == (16, "config")  # the rest comes from peft-config
    assert cfg.model_entry(GEMMA4) is local


@pytest.mark.parametrize(("body", "key", "problem"), [
    ("selct = ['LORA']", "selct", "did you mean 'select'"),
    ("select = ['LORA999']", "select", "unknown rule code, prefix or name 'LORA999'"),
    ("ignore = 'LORA001'", "ignore", "expected an array"),
    ("fail-on = 'sometimes'", "fail-on", "not one of error, warning, info, never"),
    ("[severity]\nLORA001 = 'fatal'", "severity.LORA001", "not error, warning or info"),
    ("[severity]\nNOPE001 = 'info'", "severity.NOPE001", "unknown rule code"),
    ("models = [{ target = 'gemma4', trust_remote_code = true }]", "models[0].trust_remote_code",
     "did you mean 'trust-remote-code'"),
    ("models = [{ target = 'gemma4', target-modules = '(q_proj' }]", "models[0].target-modules",
     "invalid regular expression"),
    ("models = [{ target = 'gemma4', peft-config = 'missing.json' }]", "models[0].peft-config", "no such file"),
    ("models = ['gemma4', './gemma4x', 'gemma4']", "models[2]", "listed twice"),
    ("[[per-module-ignores]]\nmodel = 'gemma4'\nmodules = ['re:model\\\\.(vision']\ncodes = ['LORA001']\nreason = 'x'",
     "per-module-ignores[0].modules", "invalid regular expression"),
    ("[[per-module-ignores]]\nmodel = 'gemma4'\nmodules = ['q_proj']\ncodes = ['LORA001']",
     "per-module-ignores[0].reason", "required key is missing"),
    ("[[per-module-ignores]]\nmodel = 'gemma4'\nmodules = ['q_proj']\ncodes = ['LORA001']\nreason = '  '",
     "per-module-ignores[0].reason", "non-empty"),
    ("[[per-module-ignores]]\nmodel = 'gemma4'\nmodules = ['q_proj']\ncodes = ['LORA0X']\nreason = 'x'",
     "per-module-ignores[0].codes", "unknown rule code"),
    ("[[per-module-ignores]]\nmodel = 'gemma4'\nmodule = ['q_proj']\ncodes = ['LORA001']\nreason = 'x'",
     "per-module-ignores[0].module", "did you mean 'modules'"),
    ("select = [", "(file)", "not valid TOML"),
])
def test_malformed_config_names_file_key_and_problem(tmp_path, body, key, problem):
    file = write(tmp_path / "archlint.toml", body + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert caught.value.file == str(file) and caught.value.key == key, str(caught.value)
    assert problem in caught.value.problem


@pytest.mark.parametrize(("table", "key", "problem"), [
    ("models = ['gemma4']\nselct = ['LORA']", "[tool.archlint] selct", "unknown key (did you mean 'select'?)"),
    ("select = ['LORA', 'NOPE001']", "[tool.archlint] select", "unknown rule code, prefix or name 'NOPE001'"),
    ("[[tool.archlint.per-module-ignores]]\nmodel = 'gemma4'\nmodules = 're:model\\\\.(vision'\n"
     "codes = ['LORA001']\nreason = 'x'",
     "[tool.archlint] per-module-ignores[0].modules", "invalid regular expression"),
    ("[[tool.archlint.per-module-ignores]]\nmodel = 'gemma4'\nmodules = 'q_proj'\ncodes = ['LORA001']",
     "[tool.archlint] per-module-ignores[0].reason", "required key is missing"),
])
def test_config_errors_exit_2_naming_file_and_key(tmp_path, monkeypatch, table, key, problem):
    from click.testing import CliRunner

    from archlint.cli import main

    body = table if table.startswith("[[") else f"[tool.archlint]\n{table}"
    write(tmp_path / "pyproject.toml", f"[project]\nname = 'x'\n\n{body}\n")
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(main, [])  # a bare `archlint`: the configuration is discovered
    assert out.exit_code == 2, out.output
    assert f"{tmp_path / 'pyproject.toml'}: {key}: {problem}" in " ".join(out.output.split()), out.output


def test_module_patterns_match_like_peft_target_modules():
    assert module_matches("q_proj", "model.layers.0.self_attn.q_proj")
    assert module_matches("self_attn.q_proj", "model.layers.0.self_attn.q_proj")
    assert module_matches("q_proj", "q_proj")
    assert not module_matches("proj", "model.layers.0.self_attn.q_proj")  # a segment boundary, not a substring
    assert module_matches(r"re:model\.layers\.\d+\.self_attn\.q_proj", "model.layers.10.self_attn.q_proj")
    assert not module_matches(r"re:layers\.\d+", "model.layers.10")  # full match, not search


# -- selection and severities -----------------------------------------------------------


def test_selection_layers_select_extend_ignore_and_the_command_line_wins():
    file = Layer(select=["LORA"], extend_select=["ATTN001"], ignore=["LORA004"])
    codes = selected_codes([file])
    assert "ATTN001" in codes and "LORA001" in codes and "LORA004" not in codes and "NORM001" not in codes
    # a command-line --select restarts: the file's extend-select and ignore no longer apply
    assert selected_codes([file, Layer(select=["LORA004", "NORM001"])]) == ["LORA004", "NORM001"]
    # a command-line --extend-select beats the file's ignore; a command-line --ignore always applies
    codes = selected_codes([file, Layer(extend_select=["LORA004"], ignore=["LORA001"])])
    assert "LORA004" in codes and "LORA001" not in codes and "ATTN001" in codes
    # no select anywhere: every rule, minus the ignores
    codes = selected_codes([Layer(ignore=["LORA"])])
    assert "NORM001" in codes and "LORA001" not in codes


def test_config_selection_severity_and_keyword_options_through_the_api(tmp_path):
    cfg = write(tmp_path / "archlint.toml", """\
        select = ["LORA"]
        ignore = ["LORA001"]
        [severity]
        LORA = "info"
        LORA004 = "warning"
        """)
    report = lint(WRAPPED, config=cfg)
    assert report.rules == [c for c in report.rules if c.startswith("LORA")] and "LORA001" not in report.rules
    assert {(f.code, f.severity) for f in report.findings} == {("LORA004", Severity.WARNING)}  # code beats prefix
    # keyword options are the command line: they beat the file
    report = lint(WRAPPED, config=cfg, extend_select=["LORA001"])
    assert {(f.code, f.severity) for f in report.findings} == {
        ("LORA004", Severity.WARNING), ("LORA001", Severity.INFO)}
    report = lint(WRAPPED, config=cfg, select=["LORA001"])
    assert report.rules == ["LORA001"] and {f.severity for f in report.findings} == {Severity.INFO}


def test_fail_on_from_the_file_and_the_command_line_beats_it(tmp_path):
    write(tmp_path / "archlint.toml", f"""\
        models = ["{WRAPPED}"]
        select = ["LORA001"]
        fail-on = "never"
        [severity]
        LORA001 = "warning"
        """)
    assert cli(tmp_path).returncode == 0
    out = cli(tmp_path, "--fail-on", "warning", "--extend-select", "LORA004", "--format", "json")
    assert out.returncode == 1
    codes = {(f["code"], f["severity"]) for f in json.loads(out.stdout)["results"][0]["findings"]}
    assert codes == {("LORA001", "warning"), ("LORA004", "error")}  # the command line adds to the file's select


def test_per_module_ignores_remove_exactly_the_matched_paths(tmp_path):
    cfg = write(tmp_path / "archlint.toml", f"""\
        select = ["LORA001", "ARCH001"]
        [[per-module-ignores]]
        model = "{WRAPPED}"
        modules = ["layers.0.attn.q_proj"]
        codes = ["LORA001"]
        reason = "layer 0 stays frozen"
        [[per-module-ignores]]
        model = "{WRAPPED}"
        modules = ["lm_head"]
        codes = ["LORA001"]
        reason = "a stale entry"
        [[per-module-ignores]]
        model = "some/other-model"
        modules = ["lm_head"]
        codes = ["LORA001"]
        reason = "not linted in this run: not judged"
        """)
    findings = lint(WRAPPED, config=cfg).findings
    paths = {p for f in findings if f.code == "LORA001" for p in f.paths}
    assert paths == {"vision.layers.1.attn.q_proj", "vision.layers.0.attn.v_proj", "vision.layers.1.attn.v_proj"}
    assert {f.pattern for f in findings if f.code == "LORA001"} == {
        "vision.layers.1.attn.q_proj", "vision.layers.*.attn.v_proj"}
    unused = [f for f in findings if f.code == "ARCH001"]
    assert [f.pattern for f in unused] == ["lm_head"] and "per-module-ignores[1]" in unused[0].message
