"""Text lines for the load-time previews: the quantization footprint and the checkpoint check.

Reads only the report's data (the ``to_dict`` of each preview), so it renders a report
read back from JSON the same way.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from ..sizes import gb


def quantization_lines(data: dict[str, Any] | None) -> list[str]:
    """The footprint table per tower, or why it could not be computed."""
    if not data:
        return []
    head = f"  [bold]quantization[/] {escape(data['method'])} ({escape(data['source'])})"
    if data.get("unavailable"):
        return [head, f"    [yellow]not checked:[/] {escape(data['unavailable'])}"]
    total = data["bytes"]
    lines = [
        f"{head}: {len(data['quantized'])} modules quantized, {len(data['kept'])} kept by the skip list"
        f"{'' if data['trainable'] else ' · [red]not trainable[/]'}",
        f"    {'tower':<28} {'before':>10} {'after':>10} {'unquantized':>12}",
    ]
    for row in data["towers"]:
        lines.append(f"    {escape(row['tower'] or '(root)'):<28} {gb(row['before']):>10} {gb(row['after']):>10} "
                     f"{gb(row['unquantized']):>12}")
    lines.append(f"    {'total':<28} {gb(total['before']):>10} {gb(total['after']):>10}   "
                 + ", ".join(f"{k} {gb(v)}" for k, v in total["by_dtype"].items()))
    if data["kept"]:
        lines.append("    kept: " + escape(", ".join(data["kept"][:6])) + (" ..." if len(data["kept"]) > 6 else ""))
    for note in data.get("notes", [])[:1]:  # the rest are in the JSON report
        lines.append(f"    [dim]{escape(note)}[/]")
    return lines


def checkpoint_lines(data: dict[str, Any] | None) -> list[str]:
    """One line on the checkpoint check (the findings carry the details)."""
    if not data:
        return []
    head = f"  [bold]checkpoint[/] {escape(data['source'])}"
    if data.get("unavailable"):
        return [f"{head}: [yellow]not checked:[/] {escape(data['unavailable'])}"]
    failed = data.get("conversion_errors") or {}
    verdict = ("[green]loads cleanly[/]" if not (data["missing"] or data["unexpected"] or data["mismatched"] or failed)
               else f"{len(data['missing'])} missing, {len(data['unexpected'])} unexpected, "
                    f"{len(data['mismatched'])} mismatched")
    if failed:
        verdict += f", {len(failed)} conversion(s) failed"
    lines = [f"{head}: {data['files']} file(s), {data['tensors']} tensors, "
             f"{data['header_bytes']:,} header bytes read · {verdict}"]
    for note in (data.get("quantization") or {}).get("notes", [])[:1]:
        lines.append(f"    [dim]{escape(note)}[/]")
    return lines

