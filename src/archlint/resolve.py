"""Target string -> ModelSpec: what to build, from where, with which config.

Five forms are understood, tried in this order:

* ``FILE.py:NAME`` or ``pkg.module:NAME``   a Python factory or ``nn.Module`` class
* an existing folder (holding ``config.json``) or a ``.json`` file; a weight file
  (``.safetensors``, ``.bin``, ``*.index.json``) stands for its folder; a PEFT adapter
  (a folder with ``adapter_config.json``, or that file) for its base model, with the
  adapter as the LoRA plan
* a path-looking string that does not exist (``./x``, ``/x``, ``a/b/c``, ``x.json``): an error
* ``org/name[@revision]``                   a Hugging Face Hub repository (config.json only)
* ``model_type``                            transformers' built-in default config, offline

Only ``config.json`` is ever fetched from the Hub: weights,
pickles and safetensors bodies are never read.
"""

from __future__ import annotations

import dataclasses
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

from .errors import TargetError
from .errors import one_line as _one_line
from .guards import check_config, parse_json

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
    adapter: str | None = None  # a PEFT adapter_config.json whose base model this is: the LoRA plan


def resolve(target: str, *, trust_remote_code: bool = False, offline: bool = False,
            hub_timeout: float | None = None, _adapters: tuple[str, ...] = ()) -> ModelSpec:
    """Turn a target string into a :class:`ModelSpec`, or raise :class:`TargetError`.

    ``hub_timeout`` bounds all Hub traffic of this target, connecting and reading
    (default :data:`archlint.hub.HUB_TIMEOUT`)."""
    if (m := _FACTORY.match(target)) and not _exists(Path(target)):
        return _resolve_factory(target, m["module"], m["name"])
    path = Path(target).expanduser()
    if _exists(path):
        adapter = _adapter_config(path)
        if adapter is not None:
            return _resolve_adapter(target, adapter, trust_remote_code=trust_remote_code, offline=offline,
                                    hub_timeout=hub_timeout, seen=_adapters)
        return _resolve_local(target, _weights_folder(path), trust_remote_code)
    if os.path.islink(path):
        raise TargetError("not-found", f"{target}: a symbolic link that leads nowhere (a loop, or a missing file)")
    if _looks_like_path(target):
        raise TargetError("not-found", f"{target}: no such file or directory")
    repo, _, revision = target.partition("@")
    if _HUB_ID.match(repo):
        return _resolve_hub(target, repo, revision or None, trust_remote_code, offline, hub_timeout)
    return _resolve_model_type(target)


def _exists(path: Path) -> bool:
    """``path.exists()`` that answers False for a name too long, a loop or a NUL byte."""
    try:
        return path.exists()
    except (OSError, ValueError, RuntimeError):
        return False


def target_kind(target: str) -> str:
    """Which form ``target`` takes, as :func:`resolve` reads it: "factory", "adapter" (a PEFT
    adapter, linted on its base model), "local", "missing" (a path that does not exist),
    "hub" or "model_type" -- without importing anything."""
    if _FACTORY.match(target) and not _exists(Path(target)):
        return "factory"
    path = Path(target).expanduser()
    if _exists(path):
        return "adapter" if _adapter_config(path) is not None else "local"
    if os.path.islink(path) or _looks_like_path(target):
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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def local_config_file(target: str) -> Path:
    """The config.json a "local" target is read from."""
    path = _weights_folder(Path(target).expanduser())
    return path / "config.json" if path.is_dir() else path


def _weights_folder(path: Path) -> Path:
    """A weight file or a sharded checkpoint's index stands for the folder holding it."""
    if path.is_file() and (path.name.endswith(WEIGHT_SUFFIXES) or path.name.endswith(".index.json")):
        return path.parent
    return path


def _adapter_config(path: Path) -> Path | None:
    """``adapter_config.json`` when ``path`` is a PEFT adapter (that file, or a folder holding
    it and no config.json of its own)."""
    if path.is_file() and path.name == "adapter_config.json":
        return path
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        return path / "adapter_config.json"
    return None


def _resolve_adapter(target: str, adapter: Path, *, trust_remote_code: bool, offline: bool,
                     hub_timeout: float | None = None, seen: tuple[str, ...] = ()) -> ModelSpec:
    if str(adapter.resolve()) in seen:
        raise TargetError("bad-config", f"{target}: {adapter}: base_model_name_or_path leads back to this adapter")
    try:
        raw = parse_json(adapter.read_text(encoding="utf-8"), f"{target}: {adapter}")
    except (OSError, ValueError, RecursionError) as e:  # unreadable, not UTF-8, not JSON
        raise TargetError("malformed-config",
                          f"{target}: {adapter} is not a readable PEFT adapter config ({_one_line(e)})") from e
    base = raw.get("base_model_name_or_path") if isinstance(raw, dict) else None
    if not isinstance(base, str) or not base:
        raise TargetError("no-config", f"{target}: {adapter} is a PEFT adapter without base_model_name_or_path; "
                                       "lint the base model and pass the adapter with --peft-config")
    local = adapter.parent / base
    where = str(local) if not Path(base).is_absolute() and local.exists() else base
    spec = resolve(where, trust_remote_code=trust_remote_code, offline=offline, hub_timeout=hub_timeout,
                   _adapters=(*seen, str(adapter.resolve())))
    return dataclasses.replace(spec, target=target, adapter=str(adapter))


def _python_hint(folder: Path, typed: str, only: str | None = None) -> str:
    """For a folder without config.json: the ``FILE.py:NAME`` targets its Python files offer,
    spelled from the folder as the user typed it."""
    classes = [c for c in module_classes(folder) if only is None or c.startswith(f"{only}:")]
    if not classes:
        return "point archlint at a model folder, a config.json, or FILE.py:NAME for your own model code"
    shown = ", ".join(os.path.join(typed, c) for c in classes[:6])
    if len(classes) > 6:
        shown += f" and {len(classes) - 6} more"
    return f"lint one of its nn.Module classes as FILE.py:NAME: {shown}"


def module_classes(folder: Path, limit: int = 200) -> list[str]:
    """``FILE.py:Class`` for each class in the folder's Python files that derives from an
    ``nn.Module`` (directly, through ``PreTrainedModel``, or through another such class of the
    same file). Read with ``ast``: nothing is imported or run."""
    import ast

    found: list[str] = []
    for file in sorted(folder.glob("*.py"))[:limit]:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        modules: set[str] = set()
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
            if bases & ({"Module", "PreTrainedModel"} | modules) or any(b.endswith("PreTrainedModel") for b in bases):
                modules.add(node.name)
                found.append(f"{file.name}:{node.name}")
    return found


def _resolve_local(target: str, path: Path, trust_remote_code: bool) -> ModelSpec:
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise TargetError("no-config", f"{target}: no config.json in this folder; {_python_hint(path, target)}")
    if config_file.suffix == ".py":
        raise TargetError("no-config", f"{target}: a Python file, not a config; "
                                       f"{_python_hint(path.parent, os.path.dirname(target), only=path.name)}")
    config = load_model_config(config_file, target, trust_remote_code)
    return ModelSpec(target, "local", config=config, config_file=str(config_file), trust_remote_code=trust_remote_code)


def load_model_config(config_file: Path, target: str, trust_remote_code: bool, **hub_kwargs):
    """Read a config.json into a transformers config, native classes before remote code.

    The JSON is checked first (depth, value types, sizes: :mod:`archlint.guards`). A
    ``model_type`` transformers knows is always read by its native class, whatever the
    config's ``auto_map`` says and whether or not remote code is trusted. A local folder's
    own configuration code is imported from that folder, never fetched from the Hub.
    """
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError("unreadable-config", f"{target}: cannot read {config_file}: {_one_line(e)}") from e
    try:
        raw = parse_json(text, f"{target}: {config_file}")
    except json.JSONDecodeError as e:
        raise TargetError("malformed-config",
                          f"{target}: {config_file} is not valid JSON ({e.msg} at line {e.lineno})") from e
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise TargetError("malformed-config", f"{target}: {config_file} cannot be read as JSON: {_one_line(e)}") from e
    if not isinstance(raw, dict):
        raise TargetError("malformed-config",
                          f"{target}: {config_file} holds a JSON {type(raw).__name__}, not an object")
    check_config(raw, target)
    model_type = raw.get("model_type")
    native = model_type in CONFIG_MAPPING_NAMES
    auto_map = raw.get("auto_map") or {}
    has_remote = "AutoConfig" in auto_map
    if not native and has_remote and not trust_remote_code:
        raise TargetError(
            "remote-code",
            f"{target}: model_type {model_type!r} is not in the installed transformers and the config "
            f"ships its own code (auto_map); re-run with --trust-remote-code if you trust that repository",
        )
    if not native and not has_remote:
        raise TargetError("unknown-model-type", _unknown_type_message(target, model_type, config_file))
    try:
        if native:  # never remote code, with or without the flag
            return AutoConfig.from_pretrained(str(config_file))
        if hub_kwargs:
            return AutoConfig.from_pretrained(hub_kwargs.pop("repo_id"), trust_remote_code=True, **hub_kwargs)
        folder = Path(config_file).parent
        return local_remote_class(folder, auto_map["AutoConfig"], target).from_pretrained(str(folder))
    except TargetError:
        raise
    except Exception as e:  # transformers raises ValueError/OSError/TypeError/KeyError for bad configs
        raise TargetError("bad-config", f"{target}: transformers could not read this config: {_one_line(e)}") from e


def local_remote_class(folder: Path, reference: Any, target: str):
    """``module.Class`` (or ``org/repo--module.Class``) imported from ``folder``'s own files:
    the repository part of a reference is ignored, nothing is fetched."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    if isinstance(reference, list):
        reference = next((r for r in reference if isinstance(r, str)), None)
    if not isinstance(reference, str) or reference.count(".") != 1:
        raise TargetError("remote-code", f"{target}: auto_map reference {reference!r} is not of the form module.Class")
    local = reference.split("--")[-1]
    module_file = folder / (local.split(".")[0] + ".py")
    if not module_file.is_file():
        raise TargetError(
            "remote-code",
            f"{target}: auto_map names {reference}, but {module_file.name} is not in {folder}; "
            f"archlint imports a local folder's code only from that folder",
        )
    try:
        return get_class_from_dynamic_module(local, str(folder), local_files_only=True)
    except Exception as e:
        raise TargetError("remote-code",
                          f"{target}: importing the folder's own code ({local}) failed: {_one_line(e)}") from e


def _unknown_type_message(target: str, model_type: Any, config_file: Path) -> str:
    if model_type is None:
        return f"{target}: {config_file} has no model_type; it is not a transformers config"
    return (f"{target}: model_type {model_type!r} is unknown to the installed transformers"
            f"{_did_you_mean(str(model_type))}; upgrade transformers or check the config")


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
        from transformers import __version__

        cause = _one_line(e)
        cause = cause if len(cause) <= 300 else cause[:297] + "..."
        raise TargetError("bad-config", f"{target}: transformers {__version__} cannot build its own default config "
                                        f"of this type: {cause}") from e
    return ModelSpec(target, "model_type", config=config)


def fill_sub_configs(config):
    """Replace optional sub-configs that default to None with their default config.

    ``Gemma4Config()`` has no vision or audio tower; the Gemma-4 problems live there, so a
    bare ``archlint gemma4`` must build them.
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

def _resolve_hub(target: str, repo: str, revision: str | None, trust_remote_code: bool, offline: bool,
                 hub_timeout: float | None) -> ModelSpec:
    from .hub import fetch_config
    from .quiet import quiet_libraries

    config_file = fetch_config(target, repo, revision, offline=offline, timeout=hub_timeout)
    hub_kwargs = {"repo_id": repo, "revision": revision} if trust_remote_code else {}
    with quiet_libraries():
        config = load_model_config(Path(config_file), target, trust_remote_code, **hub_kwargs)
    return ModelSpec(target, "hub", config=config, config_file=config_file, revision=revision,
                     trust_remote_code=trust_remote_code)


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
        raise TargetError("factory-not-callable", f"{target}: {name} is a {type(obj).__name__}, "
                                                  "not an nn.Module class or a function returning one")
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
