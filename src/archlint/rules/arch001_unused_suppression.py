"""ARCH001 unused-suppression."""

from __future__ import annotations

from collections.abc import Iterable

from ..config import ModuleIgnore
from ..findings import Finding, Fix, Severity
from ..suppress import Pragma, display_path
from .base import Example, LintContext, Rule


class UnusedSuppression(Rule):
    """A suppression (inline pragma or per-module-ignores entry) that suppresses nothing.

    What it does:
        Flags a `# archlint: ignore[CODES] reason` pragma in the model's own source, or a
        `per-module-ignores` entry of the configuration, that removed no finding of the
        codes it names from this model. Also flags pragmas that cannot work: no codes,
        an unknown code, or a line that is neither a `class` line nor a
        `self.<name> = ...` statement. Codes that did not run (not selected) are not
        judged. It runs after suppression and reads what each suppression removed.

    Why is this bad:
        Suppressions rot: the wrapper gets unwrapped, the submodule renamed, and the
        pragma stays, silently ready to hide the next real problem on that module. A
        typo in a code suppresses nothing while looking like it does.

    Example:
        self.proj = nn.Linear(4, 4)  # archlint: ignore[linear-wraper] clamp is a no-op

    Use instead:
        Delete the pragma or the config entry, or fix its code or placement so it names a
        finding archlint reports (`archlint TARGET --format json` lists codes and paths).

    References:
        ruff's unused-noqa (RUF100); pylint's useless-suppression
    """

    code = "ARCH001"
    name = "unused-suppression"
    severity = Severity.WARNING
    tools = ("archlint",)
    after_suppression = True

    VALID = (
        Example("fixtures/zoo/suppressed.py:QuietWrappers", note="its pragma suppresses the LORA001 wrappers"),
    )
    INVALID = (
        Example("fixtures/zoo/suppressed.py:TypoSuppression", paths=("proj",), fix="archlint: ignore[linear-wraper]"),
    )

    def check(self, ctx: LintContext) -> Iterable[Finding]:
        done = ctx.suppressions
        if done is None:
            return
        for pragma in done.broken:
            yield self._pragma(pragma)
        for suppressor in done.unused:
            yield self._pragma(suppressor) if isinstance(suppressor, Pragma) else self._ignore(suppressor)

    def _pragma(self, pragma: Pragma) -> Finding:
        why = pragma.problem or f"matched no {', '.join(pragma.selectors)} finding"
        return self.finding(
            pragma.roots,
            f"`{pragma.text.strip()}` at {pragma.where} {why}",
            module_class=pragma.module_class,
            fix=Fix("Delete the pragma, or correct its codes or its line", f"{pragma.where}: {pragma.text.strip()}"),
            details={"file": pragma.file, "line": pragma.line},
            pattern="" if pragma.roots else f"{pragma.where}",
        )

    def _ignore(self, entry: ModuleIgnore) -> Finding:
        return self.finding(
            (),
            f"{entry.key} ({', '.join(entry.selectors)} on {', '.join(entry.modules)}) "
            f"matched no finding of {entry.model}",
            module_class="",
            fix=Fix("Delete the entry, or correct its modules or codes", f"{display_path(entry.file)}: {entry.key}"),
            details={"file": entry.file, "key": entry.key},
            pattern=" | ".join(entry.modules),
        )
