"""``--format github``: workflow-command annotations within GitHub's caps, escaping, step summary."""

from __future__ import annotations

import re

from support import REPO, lint_cached

from archlint.findings import Confidence, Finding, Fix, Severity
from archlint.outputs import append_step_summary
from archlint.render import RenderOptions, render
from archlint.render.github import escape_data, escape_property
from archlint.report import Report, TargetResult

COMMAND = re.compile(r"^::(error|warning|notice) ([^:]*)::(.*)$")


def synthetic_report(n_error: int, n_warning: int, n_info: int) -> Report:
    findings = [
        Finding(code="LORA001", name="linear-wrapper", severity=severity, confidence=Confidence.HIGH,
                message=f"finding {i}: 100% wrapped, a:b", module_class="Wrapper",
                paths=(f"model.layers.{i}.proj",), fix=Fix("Do this", "line one\nline two"))
        for i, severity in enumerate(
            [Severity.ERROR] * n_error + [Severity.WARNING] * n_warning + [Severity.INFO] * n_info)
    ]
    return Report(results=[TargetResult("acme/model", findings=findings)], archlint_version="0", versions={},
                  rules=["LORA001"])


def annotations(text: str) -> list[tuple[str, str, str]]:
    return [m.groups() for line in text.splitlines() if (m := COMMAND.match(line))]


def test_two_hundred_findings_stay_within_the_per_step_caps_and_say_how_many_more():
    out = render(synthetic_report(80, 70, 50), "github", RenderOptions(root=str(REPO)))
    found = annotations(out)
    kinds = [k for k, _, _ in found]
    assert kinds.count("error") == 10 and kinds.count("warning") == 10  # GitHub's per-step caps
    assert len(found) <= 50  # GitHub's per-job cap
    notice = [m for k, props, m in found if k == "notice" and "more findings" in props]
    assert len(notice) == 1 and kinds.count("notice") <= 10
    shown = len(found) - 1
    assert notice[0].startswith(
        f"{200 - shown} more findings not annotated (70 error, 60 warning, {50 - (shown - 20)} notice)")
    # the rest are still in the log, one plain line each
    plain = [line for line in out.splitlines() if line.startswith("archlint: ")]
    assert len(plain) == 200 - shown
    assert not any(line.startswith("::") for line in plain)


def test_worst_first_and_nothing_dropped_under_the_caps():
    out = render(synthetic_report(3, 2, 1), "github", RenderOptions())
    assert [k for k, _, _ in annotations(out)] == ["error"] * 3 + ["warning"] * 2 + ["notice"]
    assert "more findings" not in out


def test_escaping_of_data_and_properties():
    assert escape_data("100% a\r\nb") == "100%25 a%0D%0Ab"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    out = render(synthetic_report(1, 0, 0), "github", RenderOptions())
    kind, props, message = annotations(out)[0]
    assert props == "title=archlint LORA001 (linear-wrapper)"  # no file: a Hub model has none in the repo
    assert message == ("acme/model: model.layers.0.proj ×1 Wrapper: finding 0: 100%25 wrapped, a:b"
                       "%0Afix: Do this%0Aline one%0Aline two")


def test_annotation_points_at_the_local_class():
    report = lint_cached("fixtures/zoo/towers.py:WrappedVisionTower", ("LORA001",))
    kind, props, _ = annotations(render(report, "github", RenderOptions(root=str(REPO))))[0]
    assert kind == "error"
    assert props == "title=archlint LORA001 (linear-wrapper),file=fixtures/zoo/towers.py,line=7"


def test_step_summary_is_appended_when_the_variable_is_set(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert not append_step_summary(synthetic_report(1, 1, 1), env={})
    assert append_step_summary(synthetic_report(2, 1, 1), env={"GITHUB_STEP_SUMMARY": str(summary)})
    text = summary.read_text()
    assert text.startswith("earlier step\n## archlint")
    rows = [line for line in text.splitlines() if line.startswith("| error") or line.startswith("| warning")
            or line.startswith("| info")]
    assert len(rows) == 4
    assert "**2 error, 1 warning, 1 info** in 1 target(s)" in text
