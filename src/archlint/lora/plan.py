"""A LoRA plan: what the user means to adapt, read from flags, a mapping or a file.

A plan is validated when it is made, so every later stage can trust it: an unknown
key, a regex that does not compile or a value of the wrong type is a
:class:`~archlint.errors.UsageError` (exit code 2) naming the key and the source.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from .targets import REGEX_PREFIX

ALL_LINEAR = "all-linear"

#: The keys archlint reads and evaluates.
PLAN_KEYS = ("target_modules", "exclude_modules", "target_parameters", "layers_to_transform",
             "layers_pattern", "modules_to_save", "r")

#: Keys an ``adapter_config.json`` saved by PEFT carries that do not change what is adapted;
#: accepted and passed to ``LoraConfig`` unchanged when PEFT is installed. Used to validate
#: keys when PEFT is not installed (with PEFT, ``LoraConfig``'s own fields are the list).
_PASSIVE_KEYS = frozenset({
    "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping",
    "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "init_lora_weights",
    "rank_pattern", "alpha_pattern", "megatron_config", "megatron_core", "loftq_config", "use_dora",
    "layer_replication", "runtime_config", "lora_bias", "trainable_token_indices", "eva_config",
    "corda_config", "use_qalora", "qalora_group_size", "target_modules_kind", "peft_version",
    "ensure_weight_tying", "alora_invocation_tokens", "arrow_config", "lora_ga_config", "use_bdlora",
})

#: Keys never passed to LoraConfig: PEFT writes them, the constructor does not take them.
_SAVED_ONLY = frozenset({"peft_version"})


@dataclass(frozen=True)
class Plan:
    """A validated LoRA configuration. ``target_modules`` is a tuple of names, a regex
    string (full-matched by PEFT), ``"all-linear"``, or None (PEFT's default for the type)."""

    target_modules: tuple[str, ...] | str | None = None
    exclude_modules: tuple[str, ...] | str | None = None
    target_parameters: tuple[str, ...] = ()
    layers_to_transform: tuple[int, ...] | int | None = None
    layers_pattern: tuple[str, ...] | str | None = None
    modules_to_save: tuple[str, ...] = ()
    r: int = 8
    source: str = "flags"  # "flags" | "peft-config" | "recipe:<name>" | a project-config label
    extra: Mapping[str, Any] = field(default_factory=dict)  # other LoraConfig keys, passed through

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def from_flags(cls, *, target_modules: str | Sequence[str] | None = None,
                   exclude_modules: str | Sequence[str] | None = None,
                   target_parameters: str | Sequence[str] | None = None, r: int | None = None) -> Plan:
        """From command-line values: comma-separated names, ``re:REGEX`` or ``all-linear``."""
        mapping = flag_mapping(target_modules=target_modules, exclude_modules=exclude_modules,
                               target_parameters=target_parameters, r=r)
        if "target_modules" not in mapping and "target_parameters" not in mapping:
            raise UsageError("a plan needs --target-modules or --target-parameters (or --peft-config FILE)")
        return cls.from_mapping(mapping, source="flags")

    @classmethod
    def from_file(cls, path: str) -> Plan:
        """From a ``LoraConfig`` JSON, as PEFT saves it (``adapter_config.json``)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as e:
            raise UsageError(f"--peft-config {path}: cannot read it ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"--peft-config {path}: not valid JSON ({e.msg}, line {e.lineno})") from None
        except UnicodeDecodeError as e:
            raise UsageError(f"--peft-config {path}: not UTF-8 text (byte {e.start}); "
                             "expected a LoraConfig JSON") from None
        except (ValueError, RecursionError) as e:  # nesting or numbers Python's parser refuses
            raise UsageError(f"--peft-config {path}: not valid JSON ({type(e).__name__})") from None
        if not isinstance(data, dict):
            raise UsageError(f"--peft-config {path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_mapping(data, source="peft-config")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "peft-config") -> Plan:
        """From a LoraConfig-shaped mapping; unknown keys and bad values are usage errors."""
        where = f"plan ({source})"
        unknown = sorted(set(data) - set(PLAN_KEYS) - _known_passive_keys())
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; a LoRA plan takes "
                             f"{', '.join(PLAN_KEYS)} and the other LoraConfig fields")
        peft_type = data.get("peft_type")
        if peft_type is not None and str(peft_type).upper() != "LORA":
            raise UsageError(f"{where}: peft_type is {peft_type!r}; archlint evaluates LoRA plans only")
        r = data.get("r", 8)
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise UsageError(f"{where}: r must be a positive integer, got {r!r}")
        plan = cls(
            target_modules=_names_or_regex(data.get("target_modules"), "target_modules", where),
            exclude_modules=_names_or_regex(data.get("exclude_modules"), "exclude_modules", where),
            target_parameters=tuple(_name_list(data.get("target_parameters"), "target_parameters", where)),
            layers_to_transform=_layers(data.get("layers_to_transform"), where),
            layers_pattern=_layers_pattern(data.get("layers_pattern"), where),
            modules_to_save=tuple(_name_list(data.get("modules_to_save"), "modules_to_save", where)),
            r=r,
            source=source,
            extra={k: v for k, v in data.items() if k not in PLAN_KEYS and k not in _SAVED_ONLY},
        )
        if plan.layers_pattern is not None and plan.layers_to_transform is None:
            raise UsageError(f"{where}: layers_pattern needs layers_to_transform")
        if plan.layers_to_transform is not None and isinstance(plan.target_modules, str):
            raise UsageError(f"{where}: layers_to_transform cannot be combined with a regex target_modules")
        return plan

    # -- views ------------------------------------------------------------------------

    @property
    def entries(self) -> list[str]:
        """What a user reads as the plan's entries: each name, or the one regex / shorthand."""
        if self.target_modules is None:
            return []
        if isinstance(self.target_modules, str):
            return [self.target_modules]
        return list(self.target_modules)

    def lora_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``peft.LoraConfig`` for this plan."""
        kwargs = dict(self.extra)
        kwargs.pop("peft_type", None)
        kwargs.update(
            r=self.r,
            target_modules=_plain(self.target_modules),
            exclude_modules=_plain(self.exclude_modules),
            target_parameters=list(self.target_parameters) or None,
            layers_to_transform=_plain(self.layers_to_transform),
            layers_pattern=_plain(self.layers_pattern),
            modules_to_save=list(self.modules_to_save) or None,
            inference_mode=False,
        )
        return kwargs

    def to_mapping(self) -> dict[str, Any]:
        """The plan as a LoraConfig-shaped dict (round-trips through :meth:`from_mapping`)."""
        out = {k: v for k, v in self.lora_kwargs().items() if v is not None and k != "inference_mode"}
        return out


def flag_mapping(*, target_modules: str | Sequence[str] | None = None,
                 exclude_modules: str | Sequence[str] | None = None,
                 target_parameters: str | Sequence[str] | None = None, r: int | None = None) -> dict[str, Any]:
    """The LoraConfig keys the command-line values stand for (only those given)."""
    mapping: dict[str, Any] = {}
    if target_modules:
        mapping["target_modules"] = _flag_value(target_modules, "--target-modules")
    if exclude_modules:
        mapping["exclude_modules"] = _flag_value(exclude_modules, "--exclude-modules")
    if target_parameters:
        mapping["target_parameters"] = _split(target_parameters)
    if r is not None:
        mapping["r"] = r
    return mapping


def merged_plan(base: Plan | None, overrides: Mapping[str, Any], *, source: str) -> Plan:
    """``base`` (a peft-config file's plan) with the keys of ``overrides`` replacing its own:
    how both the command line and a project configuration combine a file with flags."""
    mapping = base.to_mapping() if base is not None else {}
    mapping.update({k: v for k, v in overrides.items() if v is not None})
    return Plan.from_mapping(mapping, source=source)


def plan_from_options(*, target_modules: str | None = None, exclude_modules: str | None = None,
                      target_parameters: str | None = None, peft_config: str | None = None) -> Plan | None:
    """The plan the command-line options describe: None without any plan option; the flags
    given with ``--peft-config FILE`` replace the file's keys."""
    flags = dict(target_modules=target_modules, exclude_modules=exclude_modules, target_parameters=target_parameters)
    if peft_config is None:
        return Plan.from_flags(**flags) if any(v is not None for v in flags.values()) else None
    return merged_plan(Plan.from_file(peft_config), flag_mapping(**flags), source="peft-config")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _split(value: str | Sequence[str]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    return [p.strip() for v in items for p in v.split(",") if p.strip()]


def _flag_value(value: str | Sequence[str], flag: str):
    text = value if isinstance(value, str) else ",".join(value)
    if text.startswith(REGEX_PREFIX):
        regex = text[len(REGEX_PREFIX):]
        if not regex:
            raise UsageError(f"{flag}: empty regex after 're:'")
        return regex
    if text.strip().lower() == ALL_LINEAR:
        return ALL_LINEAR
    names = _split(text)
    if not names:
        raise UsageError(f"{flag}: no names given")
    return names


def _known_passive_keys() -> frozenset[str]:
    from ..quiet import quiet_libraries

    try:
        with quiet_libraries():  # importing PEFT imports bitsandbytes, which logs missing CPU kernels
            from peft import LoraConfig
    except ImportError:
        return _PASSIVE_KEYS
    return frozenset(f.name for f in dataclasses.fields(LoraConfig)) | _PASSIVE_KEYS


def _compile(regex: str, key: str, where: str) -> None:
    try:
        re.compile(regex)
    except re.error as e:
        raise UsageError(f"{where}: {key} {regex!r} is not a valid regular expression ({e})") from None


def _names_or_regex(value, key: str, where: str):
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            raise UsageError(f"{where}: {key} is an empty string")
        if value.lower() == ALL_LINEAR:
            if key != "target_modules":
                raise UsageError(f"{where}: {key} cannot be 'all-linear'")
            return ALL_LINEAR
        _compile(value, key, where)
        return value
    names = _name_list(value, key, where)
    if not names and key == "exclude_modules":
        return None
    return tuple(names)  # an empty target_modules list means "no module", not PEFT's default


def _name_list(value, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: {key} must be a list of non-empty names, got {value!r}")
    return sorted(value) if isinstance(value, set) else list(value)


def _layers(value, where: str):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return tuple(value)
    raise UsageError(f"{where}: layers_to_transform must be a layer index or a list of them, got {value!r}")


def _layers_pattern(value, where: str):
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, str) and v for v in names):
        raise UsageError(f"{where}: layers_pattern must be a name or a list of names, got {value!r}")
    for n in names:
        _compile(n, "layers_pattern", where)
    return value if isinstance(value, str) else tuple(value)
