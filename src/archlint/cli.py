"""The command line: parse, call the library, pick a renderer, set the exit code.

``archlint TARGET...`` is short for ``archlint check TARGET...``. Exit codes (DESIGN
decision 9): 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 usage
error; 3 a target could not be resolved or built.
"""

from __future__ import annotations

import sys

import click

from .errors import UsageError
from .findings import Severity
from .render import FORMATS

FAIL_ON = ("error", "warning", "info", "never")


class _DefaultToCheck(click.Group):
    """Route ``archlint TARGET`` to the ``check`` command."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToCheck, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archlint", prog_name="archlint")
def main() -> None:
    """Lint model architectures before you download the weights.

    \b
    archlint google/gemma-4-E2B-it          a Hub id (config.json only)
    archlint ./model-dir  |  ./config.json  a local folder or config
    archlint gemma4                         a transformers model type (its default config)
    archlint train/model.py:build           a Python factory or nn.Module class
    archlint rules  |  archlint explain LORA001
    """


def _codes(value: tuple[str, ...]) -> list[str]:
    return [c.strip() for v in value for c in v.split(",") if c.strip()]


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write the report to FILE.")
@click.option("--report", "reports", multiple=True, metavar="FORMAT:PATH",
              help="Also write a report in FORMAT to PATH (repeatable; the model is built once).")
@click.option("--select", multiple=True, help="Only these codes or prefixes (comma-separated, repeatable).")
@click.option("--extend-select", multiple=True, help="Add these codes or prefixes to the selection (comma-separated, repeatable).")
@click.option("--ignore", multiple=True, help="Skip these codes or prefixes (comma-separated, repeatable).")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default=None,
              help="Lowest severity that makes the exit code 1  [default: fail-on from the config, else warning]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Read this archlint.toml or pyproject.toml instead of the nearest one.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Report only findings not in this baseline file.")
@click.option("--write-baseline", type=click.Path(dir_okay=False), help="Record today's findings in this baseline file.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a config's own Python code (auto_map) to run.")
@click.option("--offline", is_flag=True, help="Use only the local Hugging Face cache.")
@click.option("--tree", is_flag=True, help="Also print the collapsed module tree with findings marked.")
@click.option("--quiet", "-q", is_flag=True, help="Print only findings at or above --fail-on, and errors.")
@click.option("--no-color", is_flag=True, help="Plain text (also: NO_COLOR).")
@click.option("--debug", is_flag=True, help="Tracebacks and timings on stderr.")
@click.option("--no-cache", is_flag=True, help="Lint every target afresh; neither read nor write the result cache.")
@click.option("--target-modules", help="LoRA plan: comma-separated names, 're:REGEX' or 'all-linear'.")
@click.option("--exclude-modules", help="LoRA plan: comma-separated names or 're:REGEX'.")
@click.option("--target-parameters", help="LoRA plan: comma-separated parameter names (e.g. mlp.experts.down_proj).")
@click.option("--peft-config", type=click.Path(dir_okay=False), help="LoRA plan from a LoraConfig JSON (adapter_config.json).")
def check(targets, fmt, output, reports, select, extend_select, ignore, fail_on, config_file, baseline,
          write_baseline, trust_remote_code, offline, tree, quiet, no_color, debug, no_cache,
          target_modules, exclude_modules, target_parameters, peft_config):
    """Lint TARGETS (default: the `models` of [tool.archlint]) and report the findings; with a
    LoRA plan, evaluate it instead of the common recipes."""
    from .api import lint_many
    from .baseline import baseline_step, check_baseline_options
    from .cache import ResultCache
    from .config import load_config
    from .outputs import ReportSpec, append_step_summary, stdout_style, write_reports
    from .plan.cli_plan import plan_from_options
    from .progress import spinner
    from .render import RenderOptions, render
    from .selection import known_rules

    result_cache = None if no_cache or tree else ResultCache()  # the tree view needs the model itself
    try:
        check_baseline_options(baseline, write_baseline)
        specs = [ReportSpec.parse(r) for r in reports]
        with known_rules(result_cache.load_catalogue() if result_cache else None):
            cfg = load_config(config_file)
        plan = plan_from_options(target_modules=target_modules, exclude_modules=exclude_modules,
                                 target_parameters=target_parameters, peft_config=peft_config)
        with spinner(sys.stderr, enabled=not quiet) as progress:
            report = lint_many(list(targets), select=_codes(select), extend_select=_codes(extend_select),
                               ignore=_codes(ignore), trust_remote_code=trust_remote_code, offline=offline,
                               debug=debug, config=cfg, progress=progress, plan=plan, cache=result_cache)
        if baseline_step(report, baseline, write_baseline):
            sys.exit(3 if report.errors else 0)
    except UsageError as e:
        raise click.UsageError(str(e)) from e
    fail_on = fail_on or cfg.fail_on or "warning"
    fail_level = None if fail_on == "never" else Severity.parse(fail_on)
    for result in report.errors:
        click.echo(f"archlint: error: {result.error.message}", err=True)
    if debug:
        for result in report.results:
            times = ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items())
            click.echo(f"archlint: debug: {result.target}: {times}", err=True)
    color, width = stdout_style(no_color=no_color, to_terminal=output is None and sys.stdout.isatty())
    options = RenderOptions(color=color and output is None, width=width, tree=tree, quiet=quiet, fail_on=fail_level)
    text = render(report, fmt, options)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
    write_reports(report, specs, options)
    if "github" in (fmt, *(s.fmt for s in specs)):
        append_step_summary(report)
    sys.exit(report.exit_code(fail_level))


@main.command("rules")
def list_rules():
    """List every rule: code, name, default severity, summary."""
    from rich.console import Console
    from rich.table import Table

    from .rules import all_rules

    table = Table(box=None, pad_edge=False)
    for column in ("code", "name", "severity", "origin", "what it flags"):
        table.add_column(column)
    for rule in all_rules():
        table.add_row(rule.code, rule.name, str(rule.severity), rule.origin, rule.summary())
    Console(width=160).print(table)


@main.command()
@click.argument("rule")
def explain(rule):
    """Show the documentation of RULE (a code or a name)."""
    from .docs import rule_markdown
    from .rules import get_rule

    try:
        found = get_rule(rule)
    except UsageError as e:
        raise click.UsageError(str(e)) from e
    click.echo(rule_markdown(found))


@main.group("cache")
def cache_group():
    """The result cache: unchanged targets are answered from it (see --no-cache)."""


@cache_group.command("info")
def cache_info():
    """Where the cache is, and how many entries it holds."""
    from .cache import ResultCache

    info = ResultCache().info()
    click.echo(f"directory: {info.directory}")
    click.echo(f"entries:   {info.entries} ({info.bytes / 1024:.1f} KiB)")


@cache_group.command("clear")
def cache_clear():
    """Remove every entry of the result cache."""
    from .cache import ResultCache

    cache = ResultCache()
    removed = cache.clear()
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {cache.directory}")
