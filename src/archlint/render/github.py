"""``github``: GitHub Actions workflow-command annotations, and a step-summary table.

GitHub keeps at most 10 error and 10 warning annotations per step and 50 per job, and
drops the rest silently (actions/toolkit, docs/problem-matchers.md, "Limitations").
This renderer therefore emits the worst findings first, at most :data:`CAP` per level
(notices, for info findings, one fewer so the closing notice still fits), then one
``::notice`` counting what was left out; the left-out findings follow as plain log
lines so the log still holds everything. The Markdown table for
``$GITHUB_STEP_SUMMARY`` (:func:`step_summary`) lists every finding.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..findings import Finding, Severity
from ..report import Report, TargetResult

COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
CAP = {Severity.ERROR: 10, Severity.WARNING: 10, Severity.INFO: 9}  # per step; 29 + 1 notice <= 50 per job


def render(report: Report, options) -> str:
    root = Path(options.root or os.getcwd())
    # (severity, annotation, plain log line); failed targets first, then the worst findings
    items = [(Severity.ERROR, _command("error", message=r.error.message, title=f"archlint: {r.error.kind}"),
              f"archlint: error {r.error.message}") for r in report.errors]  # the message names the target
    findings = sorted(((f, r) for r in report.results for f in r.findings), key=lambda fr: -fr[0].severity)
    items += [(f.severity, _annotation(f, r, root),
               f"archlint: {COMMAND[f.severity]} " + _text(f, r).replace("\n", " | "))
              for f, r in findings]
    shown: list[str] = []
    omitted: list[str] = []
    used: Counter[Severity] = Counter()
    left: Counter[Severity] = Counter()
    for severity, annotation, plain in items:
        if used[severity] < CAP[severity]:
            used[severity] += 1
            shown.append(annotation)
        else:
            omitted.append(plain)
            left[severity] += 1
    if omitted:
        detail = ", ".join(f"{left[s]} {COMMAND[s]}" for s in sorted(left, reverse=True))
        shown.append(_command("notice", title="archlint: more findings",
                              message=f"{len(omitted)} more findings not annotated ({detail}): GitHub shows at most "
                                      "10 error and 10 warning annotations per step; all are listed in this log, "
                                      "in the step summary, and in --format json/sarif reports"))
    return "".join(line + "\n" for line in [*shown, *omitted])


def step_summary(report: Report) -> str:
    """A Markdown table per target, for ``$GITHUB_STEP_SUMMARY``."""
    out = ["## archlint", ""]
    for result in report.results:
        out.append(f"### `{result.target}`")
        out.append("")
        if result.error:
            out += [f"**could not be linted** ({result.error.kind}): {_cell(result.error.message)}", ""]
            continue
        if not result.findings:
            out += ["no findings", ""]
            continue
        out += ["| severity | rule | module pattern | modules | class | message | fix |",
                "|---|---|---|---:|---|---|---|"]
        for f in result.findings:
            out.append(f"| {f.severity} | {f.code} {f.name} | `{_cell(f.pattern or '(model)')}` | {f.count} | "
                       f"{_cell(f.module_class)} | {_cell(f.message)} | {_cell(f.fix.title) if f.fix else ''} |")
        out.append("")
    counts = report.counts()
    out.append("**" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"** in {len(report.results)} target(s)")
    return "\n".join(out) + "\n"


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF are escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(finding: Finding, result: TargetResult, root: Path) -> str:
    props = {"title": f"archlint {finding.code} ({finding.name})"}
    anchor = result.class_anchors.get(finding.module_class)
    relative = anchor.relative_to(root) if anchor else None
    if not relative and result.anchor:
        anchor, relative = result.anchor, result.anchor.relative_to(root)
    if relative:  # without a file the annotation belongs to the run, which suits a model-level finding
        props.update(file=relative, line=str(anchor.line))
    return _command(COMMAND[finding.severity], message=_text(finding, result), **props)


def _text(finding: Finding, result: TargetResult) -> str:
    text = f"{result.target}: {finding.pattern or '(model)'} ×{finding.count} {finding.module_class}: {finding.message}"
    if finding.fix:
        text += f"\nfix: {finding.fix.title}"
        if finding.fix.detail:
            text += f"\n{finding.fix.detail}"
    return text


def _command(name: str, *, message: str, **props: str) -> str:
    joined = ",".join(f"{k}={escape_property(v)}" for k, v in props.items())
    return f"::{name} {joined}::{escape_data(message)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
