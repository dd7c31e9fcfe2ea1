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


#: Characters of PEFT's message shown beside a broken recipe or plan (the report wraps them).
ERROR_CHARS = 400


def short_error(plan: PlanSummary, width: int = ERROR_CHARS) -> str:
    """PEFT's error, whole when it fits in ``width`` characters: ``ValueError: Target module
    Gemma4ClippableLinear(…) is not supported. Currently, only the following modules are
    supported: `torch.nn.Linear`, …``. A module's printed repr becomes ``(…)``; a longer
    message has its long lists cut to their first items (``… N more``), then is cut after
    its last whole sentence that fits."""
    error = plan.error or {}
    if error.get("stage") not in (None, "inject"):  # PEFT injected it; the training step failed
        where = f" in {error['module']}" if error.get("module") else ""
        message = " ".join((error["message"] or "").split())
        return _shorten(f"{error['stage']}{where}: {error['type']}: {message}", width)
    message = re.sub(r"\(\n.*?\n\)", "(…)", plan.error_message or "", flags=re.S)
    return _shorten(f"{plan.error_type}: {' '.join(message.split())}", width)


#: A bracketed list of at least five comma-separated items (a set or list PEFT printed).
_LONG_LIST = re.compile(r"([\[{])([^\[\]{}]*?(?:,[^\[\]{}]*?){4,})([\]}])")


def _shorten(text: str, width: int) -> str:
    """``text`` up to ``width``: long lists cut to their first three items, then cut after the
    last whole sentence that fits (else at a word)."""
    if len(text) <= width:
        return text
    text = _LONG_LIST.sub(_first_items, text)
    if len(text) <= width:
        return text
    end = text.rfind(". ", 0, width)
    if end > width // 3:
        return text[: end + 1] + " …"
    return text[: width - 1].rsplit(" ", 1)[0] + " …"


def _first_items(match: re.Match) -> str:
    items = match.group(2).split(",")
    return f"{match.group(1)}{','.join(items[:3])}, … {len(items) - 3} more{match.group(3)}"


def _recipes(plans: list[PlanSummary]) -> list[str]:
    lines = [f"  [bold]LoRA recipes[/] [dim]({escape(plans[0].engine_label)}, r=8)[/]"]
    width = max(len(p.label) for p in plans)
    said: dict[str, str] = {}  # error -> the first recipe it broke; a later one refers to it
    for p in plans:
        name = p.label.ljust(width)
        if p.ok:
            wrapped = f"{len(p.modules)} modules" + (f" + {len(p.parameters)} parameters" if p.parameters else "")
            lines.append(f"    {escape(name)}  [green]works [/]  {wrapped}, {p.trainable:,} trainable")
        elif (error := short_error(p)) in said:
            lines.append(f"    {escape(name)}  [bold red]breaks[/]  the same error as {escape(said[error])}")
        else:
            said[error] = p.label
            lines.append(f"    {escape(name)}  [bold red]breaks[/]  {escape(error)}")
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
