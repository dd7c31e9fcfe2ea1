"""Project configuration: ``[tool.archlint]`` in ``pyproject.toml``, or ``archlint.toml``.

Discovery: from the current directory upwards, the first directory holding an
``archlint.toml``, or a ``pyproject.toml`` that has a ``[tool.archlint]`` table, wins
(``archlint.toml`` first in one directory); the walk stops at the repository root (the
directory holding ``.git``). No merging between files. Paths inside the file are relative
to the file's directory. Validation is strict: an unknown key, an unknown rule code or a
malformed value is a :class:`ConfigError` (exit 2) naming the file, the key and the problem.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .findings import FailOn, Severity
from .lora.plan import Plan, merged_plan
from .lora.targets import REGEX_PREFIX, written_entry_reaches
from .selection import selector_codes, specificity
from .targets import target_identity

_TOP_KEYS = ("models", "select", "extend-select", "ignore", "fail-on", "severity", "per-module-ignores", "timeout")
_MODEL_KEYS = ("target", "trust-remote-code", "target-modules", "exclude-modules", "target-parameters", "peft-config")
_IGNORE_KEYS = ("model", "modules", "codes", "reason")


class ConfigError(UsageError):
    """A configuration file is wrong: which file, which key, what is wrong."""

    def __init__(self, file: Path | str, key: str, problem: str):
        super().__init__(f"{file}: {key}: {problem}")
        self.file, self.key, self.problem = str(file), key, problem


@dataclass(frozen=True)
class ModelEntry:
    """One entry of ``models``: the target as written, and where it points."""

    target: str  # as written in the file: the name reports and baselines use
    location: str  # what resolve() is given: relative paths made absolute against the file
    trust_remote_code: bool = False
    plan: Plan | None = None  # target-modules / exclude-modules / target-parameters / peft-config


@dataclass(frozen=True)
class ModuleIgnore:
    """One ``per-module-ignores`` entry: these codes, on these modules of this model."""

    model: str
    location: str
    modules: tuple[str, ...]
    selectors: tuple[str, ...]  # as written
    codes: frozenset[str]  # what they select
    reason: str
    key: str  # e.g. "per-module-ignores[0]", for messages
    file: str

    def covers(self, code: str, path: str) -> bool:
        return code in self.codes and any(written_entry_reaches(m, path) for m in self.modules)


@dataclass(frozen=True)
class Config:
    """The settings of one configuration file (or none: every field at its default)."""

    file: Path | None = None
    models: tuple[ModelEntry, ...] = ()
    select: tuple[str, ...] | None = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: FailOn | None = None
    severity: Mapping[str, Severity] = field(default_factory=dict)
    per_module_ignores: tuple[ModuleIgnore, ...] = ()
    timeout: float | None = None  # seconds per target; 0 = no limit; None = archlint's default

    def model_entry(self, identity: str) -> ModelEntry | None:
        return next((m for m in self.models if m.location == identity), None)

    def ignores_for(self, identity: str) -> list[ModuleIgnore]:
        return [e for e in self.per_module_ignores if e.location == identity]

    def severity_for(self, code: str, default: Severity) -> Severity:
        """The override of the most specific selector naming ``code`` (a code beats its prefix)."""
        ranked = [(specificity(s, code), level) for s, level in self.severity.items()]
        ranked = [(rank, level) for rank, level in ranked if rank is not None]
        return max(ranked, key=lambda r: r[0])[1] if ranked else default


# -- discovery ------------------------------------------------------------------------


def find_config(start: Path | None = None) -> Path | None:
    """The nearest configuration file from ``start`` (default: cwd) up to the repository root."""
    directory = (start or Path.cwd()).resolve()
    for d in (directory, *directory.parents):
        if (d / "archlint.toml").is_file():
            return d / "archlint.toml"
        pyproject = d / "pyproject.toml"
        if pyproject.is_file() and "archlint" in _read_toml(pyproject).get("tool", {}):
            return pyproject
        if (d / ".git").exists():  # a file in worktrees and submodules, a folder otherwise
            return None
    return None


def load_config(file: Path | str | None = None, *, start: Path | None = None) -> Config:
    """Read and validate ``file``, or the discovered one; no file gives the defaults."""
    path = Path(file) if file is not None else find_config(start)
    if path is None:
        return Config()
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(path, "--config", "no such file")
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("archlint")
        if table is None:
            raise ConfigError(path, "[tool.archlint]", "this pyproject.toml has no [tool.archlint] table")
        return parse_config(table, path, prefix="[tool.archlint] ")
    return parse_config(data, path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "(file)", f"cannot read it: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(file)", f"not valid TOML: {e}") from e
    except RecursionError as e:  # arrays or tables nested thousands deep
        raise ConfigError(path, "(file)", "not valid TOML: nested too deep") from e


# -- validation -----------------------------------------------------------------------


def parse_config(table: Mapping[str, Any], file: Path, prefix: str = "") -> Config:
    """Validate a configuration table read from ``file``."""
    v = _Validator(file, prefix)
    v.known_keys(table, _TOP_KEYS, "")
    fail_on = table.get("fail-on")
    if fail_on is not None and fail_on not in set(FailOn):
        v.fail("fail-on", f"{fail_on!r} is not one of {', '.join(FailOn)}")
    timeout = table.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 <= timeout < float("inf")):
        v.fail("timeout", f"{timeout!r} is not a number of seconds (0 or more; 0 = no limit)")
    models = tuple(v.model(item, f"models[{i}]") for i, item in enumerate(v.array(table, "models")))
    seen: dict[str, str] = {}
    for i, m in enumerate(models):
        if m.location in seen:
            v.fail(f"models[{i}]", f"{m.target!r} is listed twice (also as {seen[m.location]!r})")
        seen[m.location] = m.target
    return Config(
        file=file,
        models=models,
        select=tuple(v.selectors(table, "select")) if "select" in table else None,
        extend_select=tuple(v.selectors(table, "extend-select")),
        ignore=tuple(v.selectors(table, "ignore")),
        fail_on=FailOn(fail_on) if fail_on is not None else None,
        timeout=float(timeout) if timeout is not None else None,
        severity=v.severity(table.get("severity", {})),
        per_module_ignores=tuple(
            v.module_ignore(item, f"per-module-ignores[{i}]")
            for i, item in enumerate(v.array(table, "per-module-ignores"))
        ),
    )


class _Validator:
    def __init__(self, file: Path, prefix: str):
        self.file, self.prefix = file, prefix

    def fail(self, key: str, problem: str):
        raise ConfigError(self.file, f"{self.prefix}{key}", problem)

    def known_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; expected one of {', '.join(allowed)}"
                self.fail(f"{where}{key}", f"unknown key{hint}")

    def array(self, table: Mapping[str, Any], key: str) -> list:
        value = table.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"expected an array, got {type(value).__name__}")
        return value

    def strings(self, value: Any, key: str, *, single_ok: bool = False) -> tuple[str, ...]:
        if single_ok and isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
            self.fail(key, "expected an array of non-empty strings" + (" (or one string)" if single_ok else ""))
        return tuple(s.strip() for s in value)

    def selectors(self, table: Mapping[str, Any], key: str, value: Any = None) -> list[str]:
        items = self.strings(table.get(key, []) if value is None else value, key)
        for s in items:
            if not selector_codes(s):
                self.fail(key, f"unknown rule code, prefix or name {s!r}; `archlint rules` lists them")
        return list(items)

    def regex(self, text: str, key: str) -> re.Pattern:
        try:
            return re.compile(text)
        except re.error as e:
            self.fail(key, f"invalid regular expression {text!r}: {e}")

    def severity(self, table: Any) -> dict[str, Severity]:
        if not isinstance(table, dict):
            self.fail("severity", "expected a table of code = \"error\" | \"warning\" | \"info\"")
        out = {}
        for selector, level in table.items():
            self.selectors({}, f"severity.{selector}", [selector])
            try:
                if not isinstance(level, str):
                    raise ValueError(level)
                out[selector.strip()] = Severity.parse(level)
            except ValueError:
                self.fail(f"severity.{selector}", f"{level!r} is not error, warning or info")
        return out

    def model(self, item: Any, key: str) -> ModelEntry:
        if isinstance(item, str):
            item = {"target": item}
        if not isinstance(item, dict):
            self.fail(key, "expected a target string or a table {target = \"…\", …}")
        self.known_keys(item, _MODEL_KEYS, f"{key}.")
        target = item.get("target")
        if not isinstance(target, str) or not target.strip():
            self.fail(f"{key}.target",
                      "required: the model to lint (Hub id, folder, config.json, model type or FILE.py:NAME)")
        trust = item.get("trust-remote-code", False)
        if not isinstance(trust, bool):
            self.fail(f"{key}.trust-remote-code", "expected true or false")
        plan_keys = {k: item[k] for k in _MODEL_KEYS[2:] if k in item}
        plan = self.plan(plan_keys, key) if plan_keys else None
        return ModelEntry(target.strip(), target_identity(target.strip(), self.file.parent), trust, plan)

    def plan(self, item: dict[str, Any], key: str) -> Plan:
        """The model's LoRA plan: ``peft-config`` first, the keys given beside it replace its own."""
        base = None
        if "peft-config" in item:
            raw = item["peft-config"]
            if not isinstance(raw, str) or not raw.strip():
                self.fail(f"{key}.peft-config", "expected a path to a PEFT adapter_config.json")
            path = (self.file.parent / raw).resolve()
            if not path.is_file():
                self.fail(f"{key}.peft-config", f"no such file: {raw} (paths are relative to {self.file.parent})")
            try:
                base = Plan.from_file(str(path))
            except UsageError as e:
                self.fail(f"{key}.peft-config", str(e))
        overrides: dict[str, Any] = {}
        for name in ("target-modules", "exclude-modules"):
            if name in item:
                value = item[name]
                if isinstance(value, str):  # PEFT: a string is one regex, full-matched
                    self.regex(value, f"{key}.{name}")
                    overrides[name.replace("-", "_")] = value
                else:
                    overrides[name.replace("-", "_")] = list(self.strings(value, f"{key}.{name}"))
        if "target-parameters" in item:
            overrides["target_parameters"] = list(self.strings(item["target-parameters"], f"{key}.target-parameters"))
        try:
            return merged_plan(base, overrides, source="config")
        except UsageError as e:
            self.fail(key, str(e))

    def module_ignore(self, item: Any, key: str) -> ModuleIgnore:
        if not isinstance(item, dict):
            self.fail(key, "expected a table {model, modules, codes, reason}")
        self.known_keys(item, _IGNORE_KEYS, f"{key}.")
        for required in _IGNORE_KEYS:
            if required not in item:
                self.fail(f"{key}.{required}", "required key is missing" + (
                    ": say why these findings do not matter here" if required == "reason" else ""))
        model = item["model"]
        if not isinstance(model, str) or not model.strip():
            self.fail(f"{key}.model", "expected the model as written in `models` (or as given on the command line)")
        reason = item["reason"]
        if not isinstance(reason, str) or not reason.strip():
            self.fail(f"{key}.reason", "expected a non-empty explanation")
        modules = self.strings(item["modules"], f"{key}.modules", single_ok=True)
        for m in modules:
            if m.startswith(REGEX_PREFIX):
                self.regex(m[len(REGEX_PREFIX):], f"{key}.modules")
        selectors = self.selectors(item, f"{key}.codes", item["codes"])
        if not selectors:
            self.fail(f"{key}.codes", "expected at least one rule code or prefix")
        codes = frozenset().union(*(selector_codes(s) for s in selectors))
        return ModuleIgnore(model.strip(), target_identity(model.strip(), self.file.parent), modules, tuple(selectors),
                            codes, reason.strip(), key, str(self.file))
