"""SARIF 2.1.0 for GitHub code scanning: schema, rules, locations and stable fingerprints."""

from __future__ import annotations

import dataclasses
import json

from support import REPO, config, lint_cached, validate_sarif

from archlint.render import RenderOptions, render

GEMMA4 = config("google__gemma-4-E2B-it")
OPTIONS = RenderOptions(root=str(REPO))


def sarif(report) -> dict:
    doc = json.loads(render(report, "sarif", OPTIONS))
    validate_sarif(doc)  # the official OASIS schema, schema/sarif-schema-2.1.0.json
    return doc


def fingerprints(doc) -> dict[tuple[str, str], str]:
    return {(r["ruleId"], r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]):
            r["partialFingerprints"]["primaryLocationLineHash"] for r in doc["runs"][0]["results"]}


def test_gemma4_sarif_is_valid_and_fingerprints_are_stable_and_distinct():
    from archlint import lint

    first = sarif(lint_cached(GEMMA4))
    second = sarif(lint(GEMMA4 + "/config.json"))  # a second, independent run, through the file
    results = first["runs"][0]["results"]
    assert len(results) == len(lint_cached(GEMMA4).findings) > 20
    assert fingerprints(first) == fingerprints(second)
    hashes = [r["partialFingerprints"]["archlint/v1"] for r in results]
    assert len(set(hashes)) == len(hashes)  # every finding its own alert
    assert all(r["partialFingerprints"]["primaryLocationLineHash"].endswith(":1") for r in results)


def test_fingerprint_ignores_message_count_and_versions():
    report = lint_cached(GEMMA4)
    result = report.results[0]
    changed = dataclasses.replace(result, findings=[
        dataclasses.replace(f, message=f.message + " (reworded)", paths=f.paths[:1], pattern=f.pattern)
        for f in result.findings])
    other = dataclasses.replace(report, results=[changed], archlint_version="9.9.9",
                                versions=dict.fromkeys(report.versions, "0"))
    assert fingerprints(sarif(other)) == fingerprints(sarif(report))


def test_rules_carry_their_documentation():
    doc = sarif(lint_cached(GEMMA4))
    rules = {r["id"]: r for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    lora001 = rules["LORA001"]
    assert lora001["name"] == "linear-wrapper"
    assert lora001["defaultConfiguration"]["level"] == "error"
    assert "## Why is this bad" in lora001["help"]["markdown"]
    assert lora001["helpUri"].endswith("/rules/LORA001-linear-wrapper.md")
    assert (REPO / "rules" / "LORA001-linear-wrapper.md").is_file()
    assert all(len(r["fullDescription"]["text"]) <= 1024 for r in rules.values())
    for result in doc["runs"][0]["results"]:
        assert doc["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]


def test_locations_config_file_and_module_path():
    doc = sarif(lint_cached(GEMMA4))
    result = next(r for r in doc["runs"][0]["results"]
                  if r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
                  == "model.vision_tower.encoder.layers.*.self_attn.q_proj" and r["ruleId"] == "LORA001")
    location = result["locations"][0]
    assert location["logicalLocations"][0] == {
        "name": "q_proj", "fullyQualifiedName": "model.vision_tower.encoder.layers.*.self_attn.q_proj",
        "kind": "module"}
    # Gemma4ClippableLinear lives in transformers (site-packages), so the anchor is the config file.
    uri = location["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "fixtures/configs/google__gemma-4-E2B-it/config.json"
    assert result["level"] == "error" and result["properties"]["count"] == 16


def test_local_model_points_at_the_class_definition():
    doc = sarif(lint_cached("fixtures/zoo/towers.py:WrappedVisionTower", ("LORA001",)))
    (first, *_) = doc["runs"][0]["results"]
    physical = first["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "fixtures/zoo/towers.py"
    line = (REPO / "fixtures/zoo/towers.py").read_text().splitlines()[physical["region"]["startLine"] - 1]
    assert line.startswith("class ClampedLinear(")


def test_failed_target_is_a_tool_notification():
    doc = sarif(lint_cached("./no/such/model"))
    invocation = doc["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["descriptor"]["id"] == "not-found"
