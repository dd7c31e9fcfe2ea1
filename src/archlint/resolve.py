"""Target string -> ModelSpec: what to build, from where, with which config.

Five forms are understood, tried in this order:

* ``FILE.py:NAME`` or ``pkg.module:NAME``   a Python factory or ``nn.Module`` class
* an existing folder (holding ``config.json``) or a ``.json`` file
* a path-looking string that does not exist (``./x``, ``/x``, ``a/b/c``, ``x.json``): an error
* ``org/name[@revision]``                   a Hugging Face Hub repository (config.json only)
* ``model_type``                            transformers' built-in default config, offline

Only ``config.json`` is ever fetched from the Hub (decision 3 in DESIGN.md): weights,
pickles and safetensors bodies are never read.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TargetError, one_line as _one_line

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FACTORY = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][\w.]*)$")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved target: a config to build from, or a factory to call."""

    target: str
    kind: str  # "hub" | "local" | "model_type" | "factory"
    config: Any = None  # transformers.PretrainedConfig
    factory: Callable[[], Any] | None = None
    config_file: str | None = None  # where config.json was read from, if anywhere
    revision: str | None = None
    trust_remote_code: bool = False


def resolve(target: str, *, trust_remote_code: bool = False, offline: bool = False) -> ModelSpec:
    """Turn a target string into a :class:`ModelSpec`, or raise :class:`TargetError`."""
    kind = target_kind(target)
    if kind == "factory":
        m = _FACTORY.match(target)
        return _resolve_factory(target, m["module"], m["name"])
    if kind == "local":
        return _resolve_local(target, Path(target).expanduser(), trust_remote_code)
    if kind == "missing":
        raise TargetError("not-found", f"{target}: no such file or directory")
    if kind == "hub":
        repo, _, revision = target.partition("@")
        return _resolve_hub(target, repo, revision or None, trust_remote_code, offline)
    return _resolve_model_type(target)


def target_kind(target: str) -> str:
    """Which of the forms above ``target`` is: "factory", "local", "missing" (a path that
    does not exist), "hub" or "model_type" -- without importing anything."""
    if _FACTORY.match(target) and not Path(target).exists():
        return "factory"
    if Path(target).expanduser().exists():
        return "local"
    if _looks_like_path(target):
        return "missing"
    return "hub" if _HUB_ID.match(target.partition("@")[0]) else "model_type"


def _looks_like_path(target: str) -> bool:
    return (
        target.startswith((".", "/", "~"))
        or target.endswith(".json")
        or target.count("/") > 1
        or os.sep in target and os.sep != "/"
    )


# -- local folders and files -------------------------------------------------------


def _resolve_local(target: str, path: Path, trust_remote_code: bool) -> ModelSpec:
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise TargetError("no-config", f"{target}: no config.json in this folder; point archlint at a model folder or a config file")
    config = load_config(config_file, target, trust_remote_code)
    return ModelSpec(target, "local", config=config, config_file=str(config_file), trust_remote_code=trust_remote_code)


def load_config(config_file: Path, target: str, trust_remote_code: bool, **hub_kwargs):
    """Read a config.json into a transformers config, native classes before remote code."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        raw = json.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError("unreadable-config", f"{target}: cannot read {config_file}: {e}") from e
    except json.JSONDecodeError as e:
        raise TargetError("malformed-config", f"{target}: {config_file} is not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(raw, dict):
        raise TargetError("malformed-config", f"{target}: {config_file} holds a JSON {type(raw).__name__}, not an object")
    model_type = raw.get("model_type")
    native = model_type in CONFIG_MAPPING_NAMES
    has_remote = "AutoConfig" in raw.get("auto_map", {})
    if not native and has_remote and not trust_remote_code:
        raise TargetError(
            "remote-code",
            f"{target}: model_type {model_type!r} is not in the installed transformers and the config "
            f"ships its own code (auto_map); re-run with --trust-remote-code if you trust that repository",
        )
    if not native and not has_remote:
        raise TargetError("unknown-model-type", _unknown_type_message(target, model_type, config_file))
    source = hub_kwargs.pop("repo_id", None) or str(Path(config_file).parent)
    try:
        # Native classes first (DESIGN decision 2): a known model_type never runs remote code.
        return AutoConfig.from_pretrained(
            source if not native else str(config_file),
            trust_remote_code=bool(trust_remote_code and not native),
            **hub_kwargs if not native else {},
        )
    except TargetError:
        raise
    except Exception as e:  # transformers raises ValueError/OSError/TypeError/KeyError for bad configs
        raise TargetError("bad-config", f"{target}: transformers could not read this config: {_one_line(e)}") from e


def _unknown_type_message(target: str, model_type: Any, config_file: Path) -> str:
    if model_type is None:
        return f"{target}: {config_file} has no model_type; it is not a transformers config"
    return f"{target}: model_type {model_type!r} is unknown to the installed transformers{_did_you_mean(str(model_type))}; upgrade transformers or check the config"


# -- transformers model types ------------------------------------------------------


def _resolve_model_type(target: str) -> ModelSpec:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if target not in CONFIG_MAPPING_NAMES:
        raise TargetError(
            "unknown-target",
            f"{target}: not a file, a Hub id (org/name) or a transformers model type{_did_you_mean(target)}",
        )
    try:
        config = fill_sub_configs(AutoConfig.for_model(target))
    except Exception as e:
        raise TargetError("bad-config", f"{target}: transformers cannot build its default config: {_one_line(e)}") from e
    return ModelSpec(target, "model_type", config=config)


def fill_sub_configs(config):
    """Replace optional sub-configs that default to None with their default config.

    ``Gemma4Config()`` has no vision or audio tower; the Gemma-4 problems live there, so a
    bare ``archlint gemma4`` must build them (issue #2, scope 2).
    """
    specs = getattr(type(config), "sub_configs_defaults", None) or {}
    filled = {}
    for key, spec in specs.items():
        if key == "backbone_config" or getattr(config, key, None) is not None:
            continue
        sub, _ = spec.create_subconfig(key, None)
        filled[key] = fill_sub_configs(sub)
    if not filled:
        return config
    kwargs = {k: v for k, v in config.to_dict().items() if k in specs and k not in filled and v is not None}
    return type(config)(**kwargs, **filled)


def _did_you_mean(word: str) -> str:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    close = difflib.get_close_matches(word.lower().replace("-", "_"), list(CONFIG_MAPPING_NAMES), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# -- the Hub ------------------------------------------------------------------------


def _resolve_hub(target: str, repo: str, revision: str | None, trust_remote_code: bool, offline: bool) -> ModelSpec:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hub_errors

    try:
        config_file = hf_hub_download(repo, "config.json", revision=revision, local_files_only=offline)
    except hub_errors.GatedRepoError as e:
        raise TargetError("gated", f"{target}: the repository is gated; accept its licence on the Hub and set HF_TOKEN (or run `hf auth login`)") from e
    except hub_errors.RevisionNotFoundError as e:
        raise TargetError("revision-not-found", f"{target}: revision {revision!r} does not exist in {repo}") from e
    except hub_errors.RepositoryNotFoundError as e:
        raise TargetError("repo-not-found", f"{target}: no such repository on the Hub (or it is private: set HF_TOKEN)") from e
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as e:
        # Before EntryNotFoundError: LocalEntryNotFoundError is a subclass of it.
        raise TargetError(
            "offline",
            f"{target}: config.json is not in the local cache and the Hub cannot be reached "
            f"(offline or no network); connect once, or lint a local copy of the config",
        ) from e
    except (hub_errors.EntryNotFoundError, hub_errors.RemoteEntryNotFoundError) as e:
        raise TargetError("no-config", f"{target}: the repository has no config.json; it is not a transformers model") from e
    except hub_errors.HfHubHTTPError as e:
        raise TargetError("hub-error", f"{target}: the Hub answered {_one_line(e)}") from e
    except OSError as e:
        raise TargetError("hub-error", f"{target}: could not fetch config.json: {_one_line(e)}") from e
    hub_kwargs = {"repo_id": repo, "revision": revision} if trust_remote_code else {}
    config = load_config(Path(config_file), target, trust_remote_code, **hub_kwargs)
    return ModelSpec(target, "hub", config=config, config_file=config_file, revision=revision, trust_remote_code=trust_remote_code)


# -- Python factories ---------------------------------------------------------------


def _resolve_factory(target: str, module_ref: str, name: str) -> ModelSpec:
    try:
        module = _import(module_ref)
    except TargetError:
        raise
    except Exception as e:
        raise TargetError("factory-import", f"{target}: importing {module_ref} failed: {_one_line(e)}") from e
    obj: Any = module
    for attr in name.split("."):
        if not hasattr(obj, attr):
            raise TargetError("factory-missing", f"{target}: {module_ref} has no attribute {name!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise TargetError("factory-not-callable", f"{target}: {name} is a {type(obj).__name__}, not an nn.Module class or a function returning one")
    return ModelSpec(target, "factory", factory=obj, config_file=getattr(module, "__file__", None))


def _import(module_ref: str):
    if module_ref.endswith(".py"):
        path = Path(module_ref).expanduser().resolve()
        if not path.is_file():
            raise TargetError("not-found", f"{module_ref}: no such file")
        name = "archlint_factory_" + re.sub(r"\W", "_", str(path))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(module_ref)
