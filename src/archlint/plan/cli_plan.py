"""The plan the command-line options describe: ``--peft-config FILE`` and/or the flags."""

from __future__ import annotations

from .model import Plan


def plan_from_options(*, target_modules: str | None = None, exclude_modules: str | None = None,
                      target_parameters: str | None = None, peft_config: str | None = None) -> Plan | None:
    """None without any plan option. Flags given with ``--peft-config`` replace the file's keys."""
    flags_given = any(v is not None for v in (target_modules, exclude_modules, target_parameters))
    if peft_config is None:
        if not flags_given:
            return None
        return Plan.from_flags(target_modules=target_modules, exclude_modules=exclude_modules,
                               target_parameters=target_parameters)
    base = Plan.from_file(peft_config)
    if not flags_given:
        return base
    overrides = Plan.from_flags(target_modules=target_modules or _unset(base.target_modules),
                                exclude_modules=exclude_modules, target_parameters=target_parameters)
    mapping = base.to_mapping()
    for key in ("target_modules", "exclude_modules", "target_parameters"):
        value = overrides.to_mapping().get(key)
        if value is not None:
            mapping[key] = value
    return Plan.from_mapping({**mapping, **{k: v for k, v in base.extra.items()}}, source="peft-config")


def _unset(value):
    """The file's target_modules as a flag value, so that from_flags accepts an exclude-only override."""
    if value is None:
        return None
    return f"re:{value}" if isinstance(value, str) and value != "all-linear" else (value if isinstance(value, str) else ",".join(value))
