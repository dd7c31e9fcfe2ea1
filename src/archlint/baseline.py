"""Baselines: accept today's findings, then report only new ones.

An entry is keyed on (code, model, module pattern) -- never on message text, counts or
layer indices, so rewording a message or adding layers does not invalidate it. The model
is the target as named in ``models`` or on the command line. The file is JSON, sorted,
one entry per line, so a change to it reads as a one-line diff::

    {
      "archlint_baseline": 1,
      "findings": [
        {"code": "LORA001", "model": "google/gemma-4-E2B-it",
         "pattern": "model.audio_tower.layers.*.self_attn.k_proj", "name": "linear-wrapper"},
        ...
      ]
    }

``name`` is for the reader; it is not part of the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .report import Report

BASELINE_VERSION = 1


@dataclass(frozen=True, order=True)
class Entry:
    code: str
    model: str
    pattern: str
    name: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "model": self.model, "pattern": self.pattern, "name": self.name}


@dataclass(frozen=True)
class BaselineResult:
    """What a baseline did to a report: findings it hid, and entries that no longer occur."""

    file: str
    matched: int
    stale: tuple[Entry, ...]

    def to_dict(self) -> dict:
        return {"file": self.file, "matched": self.matched, "stale": [e.to_dict() for e in self.stale]}


def current_entries(report: Report) -> list[Entry]:
    """One entry per distinct (code, model, pattern) among the report's findings, sorted."""
    found = {Entry(f.code, r.target, f.pattern, f.name) for r in report.results for f in r.findings}
    return sorted(found)


def write_baseline(report: Report, file: str | Path) -> list[Entry]:
    entries = current_entries(report)
    lines = [json.dumps(e.to_dict(), ensure_ascii=False) for e in entries]
    body = ",\n    ".join(lines)
    text = f'{{\n  "archlint_baseline": {BASELINE_VERSION},\n  "findings": [\n    {body}\n  ]\n}}\n' if lines else \
        f'{{\n  "archlint_baseline": {BASELINE_VERSION},\n  "findings": []\n}}\n'
    try:
        Path(file).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{file}: cannot write the baseline: {e}") from e
    return entries


def load_baseline(file: str | Path) -> set[Entry]:
    """Read a baseline file; anything but the format above is a usage error naming the file."""
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{file}: cannot read the baseline: {e.strerror or e}") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting, huge numbers
        raise UsageError(f"{file}: the baseline is not valid JSON: {type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(data, dict) or data.get("archlint_baseline") != BASELINE_VERSION:
        raise UsageError(f"{file}: not an archlint baseline (expected \"archlint_baseline\": {BASELINE_VERSION}); "
                         "write one with --write-baseline")
    entries = data.get("findings")
    if not isinstance(entries, list):
        raise UsageError(f"{file}: findings: expected an array")
    out = set()
    for i, item in enumerate(entries):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("code", "model", "pattern")):
            raise UsageError(f"{file}: findings[{i}]: expected an object with string code, model and pattern")
        out.add(Entry(item["code"], item["model"], item["pattern"], str(item.get("name", ""))))
    return out


def apply_baseline(report: Report, baseline: Iterable[Entry], file: str | Path) -> BaselineResult:
    """Drop the findings the baseline holds; list its entries for linted models that no longer occur.

    Entries of models this run did not lint, or could not build, are not judged stale.
    """
    baseline = set(baseline)
    current: set[Entry] = set()
    matched = 0
    for result in report.results:
        kept = []
        for f in result.findings:
            entry = Entry(f.code, result.target, f.pattern)
            current.add(entry)
            if entry in baseline:
                matched += 1
            else:
                kept.append(f)
        result.findings = kept
    judged = {r.target for r in report.results if r.error is None}
    codes = set(report.rules)
    stale = sorted(e for e in baseline if e.model in judged and e.code in codes and e not in current)
    return BaselineResult(str(file), matched, tuple(stale))


def check_baseline_options(baseline: str | None, write: str | None) -> None:
    if baseline and write:
        raise UsageError("--baseline and --write-baseline exclude each other: write a baseline, then use it")


def baseline_step(report: Report, baseline: str | None, write: str | None) -> bool:
    """The command line's ``--baseline``/``--write-baseline``; True when the run ends after writing.

    Notes go to stderr, so machine formats on stdout stay clean.
    """
    import sys

    check_baseline_options(baseline, write)
    if write:
        if report.errors:
            print(f"archlint: warning: {len(report.errors)} target(s) failed; their findings are not in the baseline",
                  file=sys.stderr)
        entries = write_baseline(report, write)
        print(f"archlint: wrote {len(entries)} baseline entries to {write}", file=sys.stderr)
        return True
    if baseline:
        report.baseline = apply_baseline(report, load_baseline(baseline), baseline)
        outcome = report.baseline
        print(f"archlint: baseline {baseline}: {outcome.matched} known finding(s) hidden, "
              f"{len(outcome.stale)} stale entr{'y' if len(outcome.stale) == 1 else 'ies'}", file=sys.stderr)
        for e in outcome.stale:
            print(f"archlint: stale baseline entry (no longer found): {e.code} {e.model} {e.pattern}", file=sys.stderr)
    return False
