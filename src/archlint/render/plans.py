"""Plans in the text report: a verdict and per-entry table for the user's plan, a
one-line-per-recipe "works / breaks" table otherwise. Returns rich-markup lines."""

from __future__ import annotations

import re

from rich.markup import escape

from ..lora.evaluate import PlanEvaluation
from ..lora.oracle import stable_message
from ..lora.recipes import label


def plan_lines(evaluations: list[PlanEvaluation]) -> list[str]:
    if not evaluations:
        return []
    if all(e.plan.source.startswith("recipe:") for e in evaluations):
        return _recipes(evaluations)
    return [line for e in evaluations for line in _plan(e)]


def short_error(evaluation: PlanEvaluation, width: int = 110) -> str:
    """``ValueError: Target module Gemma4ClippableLinear(…) is not supported. …`` on one line."""
    if evaluation.outcome.ok and evaluation.error:  # PEFT injected it; the training step failed
        error = evaluation.error
        where = f" in {error['module']}" if error.get("module") else ""
        text = f"{error['stage']}{where}: {error['type']}: {' '.join(error['message'].split())}"
        return text if len(text) <= width else text[: width - 1] + "…"
    message = re.sub(r"\(\n.*?\n\)", "(…)", stable_message(evaluation.outcome.error_message or ""), flags=re.S)
    text = f"{evaluation.outcome.error_type}: {' '.join(message.split())}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _engine(evaluation: PlanEvaluation) -> str:
    if evaluation.outcome.engine == "peft":
        return f"PEFT {evaluation.peft_version} on the meta model"
    return "archlint's reimplementation of PEFT 0.21.2 (PEFT not installed)"


def _recipes(evaluations: list[PlanEvaluation]) -> list[str]:
    lines = [f"  [bold]LoRA recipes[/] [dim]({escape(_engine(evaluations[0]))}, r=8)[/]"]
    width = max(len(label(e.plan)) for e in evaluations)
    for e in evaluations:
        name = label(e.plan).ljust(width)
        if e.ok:
            wrapped = f"{len(e.outcome.modules)} modules" + (f" + {len(e.outcome.parameters)} parameters" if e.outcome.parameters else "")
            lines.append(f"    {escape(name)}  [green]works [/]  {wrapped}, {e.outcome.trainable:,} trainable")
        else:
            lines.append(f"    {escape(name)}  [bold red]breaks[/]  {escape(short_error(e))}")
        lines.extend(f"    {' ' * width}          [dim]{escape(n)}[/]" for n in e.notes)
    return lines


def _plan(e: PlanEvaluation) -> list[str]:
    verdict = "[green]ok[/]" if e.ok else f"[bold red]error[/] — {escape(short_error(e))}"
    lines = [f"  [bold]LoRA plan[/] ({escape(e.plan.source)}): {verdict} [dim]({escape(_engine(e))})[/]"]
    if e.entries:
        width = max(5, *(len(x.entry) for x in e.entries))
        lines.append(f"    [dim]{'entry'.ljust(width)}  matches  layers   classes · towers[/]")
        for x in e.entries:
            layers = f"{x.layers_reached}/{x.layers_total}" if x.layers_total else "—"
            where = ", ".join(t or "(root)" for t in x.towers)
            via = f" → parameter `{x.rerouted_to}`" if x.rerouted_to else ""
            lines.append(f"    {escape(x.entry.ljust(width))}  {x.matches:>7}  {layers:<7}  "
                         f"{escape(', '.join(x.classes) or '—')}{' · ' + escape(where) if where else ''}{escape(via)}")
    if e.ok:
        lines.append(f"    wraps {len(e.outcome.modules)} modules and {len(e.outcome.parameters)} parameters; "
                     f"{e.outcome.trainable:,} trainable parameters at r={e.plan.r}")
    lines.extend(f"    [dim]{escape(n)}[/]" for n in e.notes)
    return lines
