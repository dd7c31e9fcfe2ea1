"""The command line: parse, call the library, pick a renderer, set the exit code.

The lint is the root command, ``archlint TARGET... [OPTIONS]``; a first word that names a
subcommand (``archlint rules``, ``archlint explain CODE``) runs that instead. Every lint
option is one entry of :data:`LINT_OPTIONS` and arrives in :func:`lint_command` as an
attribute of ``opts``; a subcommand is one ``@main.command()`` function.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 usage
error (one stderr line); 3 a target could not be resolved, built or linted in time; 130
interrupted (Ctrl-C). docs/errors.md lists them with every error kind.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import click

from .errors import UsageError
from .findings import FailOn
from .render import OutputFormat


def _codes(value: tuple[str, ...]) -> list[str]:
    return [c.strip() for v in value for c in v.split(",") if c.strip()]


#: Every option of the lint, in the order ``archlint --help`` lists them. To add one, append
#: a ``click.option`` here and read it as ``opts.<name>`` in :func:`lint_command`.
LINT_OPTIONS = [
    click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="text",
                 show_default=True, help="Output format (html: one self-contained page)."),
    click.option("--output", "-o", type=click.Path(), help="Write the report to FILE instead of stdout."),
    click.option("--report", "reports", multiple=True, metavar="FORMAT:PATH",
                 help="Also write a report in FORMAT to PATH (repeatable; the model is built once)."),
    click.option("--select", multiple=True, metavar="CODES",
                 help="Only these codes, prefixes or names (comma-separated, repeatable)."),
    click.option("--extend-select", multiple=True, metavar="CODES",
                 help="Add these to the selection (comma-separated, repeatable)."),
    click.option("--ignore", multiple=True, metavar="CODES",
                 help="Skip these codes, prefixes or names (comma-separated, repeatable)."),
    click.option("--fail-on", type=click.Choice([f.value for f in FailOn]), default=None,
                 help="Lowest severity that makes the exit code 1  [default: fail-on from the config, else warning]"),
    click.option("--target-modules", metavar="NAMES",
                 help="LoRA plan: comma-separated names, 're:REGEX' or 'all-linear'."),
    click.option("--exclude-modules", metavar="NAMES", help="LoRA plan: comma-separated names or 're:REGEX'."),
    click.option("--target-parameters", metavar="NAMES",
                 help="LoRA plan: comma-separated parameter names (e.g. mlp.experts.down_proj)."),
    click.option("--peft-config", type=click.Path(dir_okay=False),
                 help="LoRA plan from a LoraConfig JSON (adapter_config.json)."),
    click.option("--quantization", metavar="METHOD",
                 help="Preview quantization with transformers' own quantizer: bnb-4bit, bnb-8bit, fp8 "
                      "or a quantization_config JSON."),
    click.option("--check-checkpoint", is_flag=True,
                 help="Also read a Hub repository's safetensors headers (range requests only) "
                      "and check them against the model."),
    click.option("--config", "config_file", type=click.Path(dir_okay=False),
                 help="Read this archlint.toml or pyproject.toml instead of the nearest one."),
    click.option("--baseline", type=click.Path(dir_okay=False), help="Report only findings not in this baseline file."),
    click.option("--write-baseline", type=click.Path(), help="Record today's findings in this baseline file."),
    click.option("--offline", is_flag=True, help="Use only local files and the Hugging Face cache; never the network."),
    click.option("--trust-remote-code", is_flag=True, help="Allow a config's own Python code (auto_map) to run."),
    click.option("--tree", is_flag=True, help="Also print the collapsed module tree with findings marked."),
    click.option("--quiet", "-q", is_flag=True, help="Per target: its header and the findings at or above --fail-on."),
    click.option("--no-color", is_flag=True, help="Plain text (also: NO_COLOR)."),
    click.option("--debug", is_flag=True, help="Tracebacks and timings on stderr."),
    click.option("--no-cache", is_flag=True, help="Lint every target afresh; neither read nor write the result cache."),
    click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                 help="Time limit per target (0: none)  [default: timeout from the config, else 600]"),
]

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class OneLineUsageError(click.UsageError):
    """A usage error as one stderr line (exit 2), without click's usage banner."""

    def show(self, file=None) -> None:
        click.echo(f"archlint: error: {self.format_message()}", file=file or sys.stderr)


class _LintFirst(click.Group):
    """``archlint TARGET... [OPTIONS]`` lints; ``archlint COMMAND [ARGS]`` runs a subcommand.

    Only the first word selects a subcommand, so options and targets may come in any order
    after it. ``archlint check ...``, the old spelling of the lint, still works.
    """

    allow_interspersed_args = True

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] == "check":
            args = args[1:]
        if args and args[0] in self.commands:
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return ctx.args
        return click.Command.parse_args(self, ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C: one line, exit 130
            click.echo("\narchlint: interrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("archlint", "TARGET... [OPTIONS]")
        formatter.write_usage("archlint", "COMMAND [ARGS]...", prefix="       ")


def _lint_options(function):
    for option in reversed(LINT_OPTIONS):
        function = option(function)
    return function


@click.group(cls=_LintFirst, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archlint", prog_name="archlint")
@click.argument("targets", nargs=-1, metavar="TARGET...")
@_lint_options
def main(**options) -> None:
    """Lint model architectures before you download the weights.

    \b
    archlint google/gemma-4-E2B-it          a Hub id (config.json only)
    archlint ./model-dir  |  ./config.json  a local folder or config
    archlint ./model-dir/model.safetensors  a weight file or index: its folder
    archlint ./my-lora-adapter              a PEFT adapter: its base model, the adapter as the plan
    archlint gemma4                         a transformers model type (its default config)
    archlint train/model.py:build           a Python factory or nn.Module class

    With no TARGET, the `models` of [tool.archlint] are linted.
    """
    if click.get_current_context().invoked_subcommand:
        return
    lint_command(SimpleNamespace(**options))


def lint_command(opts: SimpleNamespace) -> None:
    """Lint ``opts.targets`` (default: the `models` of [tool.archlint]) and report the findings;
    with a LoRA plan, evaluate it instead of the common recipes."""
    from .api import lint_many
    from .baseline import baseline_step, check_baseline_options
    from .cache import ResultCache
    from .config import load_config
    from .lora.plan import plan_from_options
    from .outputs import (
        ReportSpec,
        append_step_summary,
        check_writable,
        error_line,
        stdout_style,
        write_reports,
        write_text,
    )
    from .progress import spinner
    from .render import RenderOptions, render
    from .selection import known_rules

    if not opts.debug:
        _quiet_library_logs()
    result_cache = None if opts.no_cache else ResultCache()
    try:
        check_baseline_options(opts.baseline, opts.write_baseline)
        specs = [ReportSpec.parse(r) for r in opts.reports]
        check_writable(opts.output, "--output", create_parents=False)
        for spec in specs:
            check_writable(spec.path, f"--report {spec.fmt}:{spec.path}", create_parents=True)
        check_writable(opts.write_baseline, "--write-baseline", create_parents=False)
        stored = result_cache.load_catalogue() if result_cache else None
        with known_rules(stored.names if stored else None):
            cfg = load_config(opts.config_file)
        plan = plan_from_options(target_modules=opts.target_modules, exclude_modules=opts.exclude_modules,
                                 target_parameters=opts.target_parameters, peft_config=opts.peft_config)
        with spinner(sys.stderr, enabled=not opts.quiet) as progress:
            report = lint_many(list(opts.targets), select=_codes(opts.select), extend_select=_codes(opts.extend_select),
                               ignore=_codes(opts.ignore), trust_remote_code=opts.trust_remote_code,
                               offline=opts.offline, debug=opts.debug, config=cfg, progress=progress, plan=plan,
                               timeout=opts.timeout, quantization=opts.quantization,
                               check_checkpoint=opts.check_checkpoint, cache=result_cache)
        if baseline_step(report, opts.baseline, opts.write_baseline):
            sys.exit(3 if report.errors else 0)
    except UsageError as e:
        raise OneLineUsageError(str(e)) from e
    fail_level = FailOn(opts.fail_on or cfg.fail_on or FailOn.WARNING).severity
    for result in report.errors:
        click.echo(error_line(result), err=True)
    if opts.debug:
        for result in report.results:
            times = ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items())
            click.echo(f"archlint: debug: {result.target}: {times}", err=True)
    color, width = stdout_style(no_color=opts.no_color, to_terminal=opts.output is None and sys.stdout.isatty())
    options = RenderOptions(color=color and opts.output is None, width=width, tree=opts.tree, quiet=opts.quiet,
                            fail_on=fail_level, errors_on_stderr=opts.output is None)
    text = render(report, opts.fmt, options)
    try:
        if opts.output:
            write_text(opts.output, text, "--output", create_parents=False)
        else:
            click.echo(text, nl=False)
        write_reports(report, specs, options)
    except UsageError as e:
        raise OneLineUsageError(str(e)) from e
    if "github" in (opts.fmt, *(s.fmt for s in specs)):
        append_step_summary(report)
    sys.exit(report.exit_code(fail_level))


def _quiet_library_logs() -> None:
    """Keep libraries' log lines (bitsandbytes looking for optional CPU kernels at import,
    transformers' notes on legacy config values) off stderr, which carries only archlint's
    own lines; ``--debug`` shows them."""
    import logging
    import os

    for name in ("bitsandbytes",):
        logging.getLogger(name).addHandler(logging.NullHandler())
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers first logs
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()


@main.command("rules")
def list_rules():
    """List every rule: code, name, default severity (and when a finding departs from it), summary."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .rules import all_rules

    table = Table(box=None, pad_edge=False)
    for column in ("code", "name", "severity", "origin", "what it flags"):
        table.add_column(column)
    table.columns[2].max_width = 36  # a note departing from the default wraps under it
    for rule in all_rules():
        severity = str(rule.severity) + (f" ({rule.severity_note})" if rule.severity_note else "")
        table.add_row(rule.code, rule.name, escape(severity), rule.origin, escape(rule.summary()))
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
        raise OneLineUsageError(str(e)) from e
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
