"""Plans in the text report: a verdict and per-entry table for the user's plan, a
one-line-per-recipe "works / breaks" table otherwise. Returns rich-markup lines."""

from __future__ import annotations

import re

from rich.markup import escape

from ..report import PlanSummary


def plan_lines(plans: list[PlanSummary]) -> list[str]:
    if not plans:
        return []
    if all(p.is_recipe for p in plans):
        return _recipes(plans)
    return [line for p in plans for line in _plan(p)]


def short_error(plan: PlanSummary, width: int = 110) -> str:
    """``ValueError: Target module Gemma4ClippableLinear(…) is not supported. …`` on one line."""
    error = plan.error or {}
    if error.get("stage") not in (None, "inject"):  # PEFT injected it; the training step failed
        where = f" in {error['module']}" if error.get("module") else ""
        message = " ".join((error["message"] or "").split())
        return _shorten(f"{error['stage']}{where}: {error['type']}: {message}", width)
    message = re.sub(r"\(\n.*?\n\)", "(…)", plan.error_message or "", flags=re.S)
    return _shorten(f"{plan.error_type}: {' '.join(message.split())}", width)


def _shorten(text: str, width: int) -> str:
    """``text`` up to ``width``, cut after its last whole sentence that fits (else at a word)."""
    if len(text) <= width:
        return text
    end = text.rfind(". ", 0, width)
    if end > width // 3:
        return text[: end + 1] + " …"
    return text[: width - 1].rsplit(" ", 1)[0] + " …"


def _recipes(plans: list[PlanSummary]) -> list[str]:
    lines = [f"  [bold]LoRA recipes[/] [dim]({escape(plans[0].engine_label)}, r=8)[/]"]
    width = max(len(p.label) for p in plans)
    for p in plans:
        name = p.label.ljust(width)
        if p.ok:
            wrapped = f"{len(p.modules)} modules" + (f" + {len(p.parameters)} parameters" if p.parameters else "")
            lines.append(f"    {escape(name)}  [green]works [/]  {wrapped}, {p.trainable:,} trainable")
        else:
            lines.append(f"    {escape(name)}  [bold red]breaks[/]  {escape(short_error(p))}")
        lines.extend(f"    {' ' * width}          [dim]{escape(n)}[/]" for n in p.notes)
    return lines


def _plan(p: PlanSummary) -> list[str]:
    verdict = "[green]ok[/]" if p.ok else f"[bold red]error[/] — {escape(short_error(p))}"
    lines = [f"  [bold]LoRA plan[/] ({escape(p.source)}): {verdict} [dim]({escape(p.engine_label)})[/]"]
    if p.entries:
        width = max(5, *(len(x.entry) for x in p.entries))
        lines.append(f"    [dim]{'entry'.ljust(width)}  matches  layers   classes · towers[/]")
        for x in p.entries:
            layers = f"{x.layers_reached}/{x.layers_total}" if x.layers_total else "—"
            where = ", ".join(t or "(root)" for t in x.towers)
            via = f" → parameter `{x.rerouted_to}`" if x.rerouted_to else ""
            lines.append(f"    {escape(x.entry.ljust(width))}  {x.matches:>7}  {layers:<7}  "
                         f"{escape(', '.join(x.classes) or '—')}{' · ' + escape(where) if where else ''}{escape(via)}")
    if p.ok:
        lines.append(f"    wraps {len(p.modules)} modules and {len(p.parameters)} parameters; "
                     f"{p.trainable:,} trainable parameters at r={p.r}")
    lines.extend(f"    [dim]{escape(n)}[/]" for n in p.notes)
    return lines
