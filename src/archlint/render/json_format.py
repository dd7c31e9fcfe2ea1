"""``--format json``: one report object, byte-identical across runs for the same input."""

from __future__ import annotations

import json

from ..report import Report


def render(report: Report, options) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
