"""ModelSpec -> nn.Module on the meta device, with the no-allocation guarantee.

The primary build is what ``from_pretrained`` itself does before loading weights
(research/meta-build.md §2): ``torch.device("meta")`` plus transformers'
``meta_device_safe_creation_ops()``, then ``cls._from_config(config, dtype=...)``. It
keeps tied weights tied and costs 0.1-0.3 s even for a 671B config.

Meta-unsafe ``__init__`` code (``.item()``/``.tolist()`` on a freshly made tensor, common
in remote code) fails there; the fallback keeps parameters on meta while small tensor
factories run on the CPU (meta-build.md §6, fallback A).

After every build :func:`assert_no_storage` proves that nothing real was allocated
beyond a small bound (DESIGN decision 3).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import TargetError
from .errors import one_line as _one_line
from .resolve import ModelSpec

#: Largest real (non-meta) storage a built model may hold, in bytes, over all tensors.
#: Legitimate cases are small CPU buffers some classes create with legacy constructors
#: (``torch.Tensor(...)`` ignores the device context) and the fallback's CPU factories.
STORAGE_BOUND = 8 * 1024 * 1024

#: The fallback keeps tensor factories of at least this many elements on meta.
_FALLBACK_META_NUMEL = 1 << 16

_AUTO_CLASS_ORDER = (
    "AutoModelForCausalLM",
    "AutoModelForImageTextToText",
    "AutoModelForSeq2SeqLM",
    "AutoModelForSpeechSeq2Seq",
    "AutoModelForTextToWaveform",
)


@dataclass
class BuiltModel:
    """A model on the meta device and how it was obtained."""

    module: nn.Module
    class_name: str
    model_type: str | None
    head: bool  # False when only AutoModel (no task head) could be used
    strategy: str  # "meta" | "meta+cpu-factories"
    seconds: float
    real_bytes: int
    class_reason: str = ""  # why this class: the config's architectures, the type's usual class, the factory
    config: object = None  # the config the module was built from, when it is not the resolved one


def build(spec: ModelSpec) -> BuiltModel:
    """Build ``spec`` on meta, or raise :class:`TargetError`."""
    start = time.perf_counter()
    if spec.kind == "factory":
        module, strategy = _with_fallback(spec, lambda: _call_factory(spec))
        head = True
        model_type = getattr(getattr(module, "config", None), "model_type", None)
        reason = "what the factory returns"
        config = None
    else:
        module, strategy, head, reason, config = _build_from_config(spec)
        model_type = spec.config.model_type
    real = assert_no_storage(module, spec.target)
    return BuiltModel(
        module=module,
        class_name=type(module).__name__,
        model_type=model_type,
        head=head,
        strategy=strategy,
        seconds=time.perf_counter() - start,
        real_bytes=real,
        class_reason=reason,
        config=None if config is spec.config else config,
    )


def _build_from_config(spec: ModelSpec):
    """The module, its strategy, head, class reason and the config it was built from.

    A bare model type's default config is transformers' own: when it fails with the chosen
    class, the other classes of the type and the config without archlint's filled-in
    sub-configs are tried (the reason says what failed first); when every one fails,
    transformers itself cannot build that default config, and the error says so (kind
    ``bad-config``) rather than blaming the build."""
    cls, head, reason = model_class_and_reason(spec)
    try:
        module, strategy = _with_fallback(spec, lambda: _from_config(cls, spec.config))
        return module, strategy, head, reason, spec.config
    except TargetError as first:
        if spec.kind != "model_type" or first.kind != "build-failed":
            raise
        failure = first
    for other_cls, other_head, config, why in _default_config_alternatives(spec, cls):
        try:
            module, strategy = _with_fallback(spec, lambda c=other_cls, g=config: _from_config(c, g))
        except TargetError as e:
            if e.kind == "missing-package":
                raise
            continue
        cause = failure.message.split("failed: ", 1)[-1]
        return module, strategy, other_head, f"{cls.__name__} raises {cause}; {why}", config
    from transformers import __version__

    cause = failure.message.split("failed: ", 1)[-1]
    raise TargetError(
        "bad-config",
        f"{spec.target}: transformers {__version__} cannot build its own default config of this type "
        f"({cls.__name__}, and every other class of the type, raise {cause}); lint a published "
        "config.json of this type instead") from failure


def _default_config_alternatives(spec: ModelSpec, tried: type):
    """Other ways transformers builds a bare model type: every class of the type on the config
    archlint filled, then on transformers' unfilled default config (as ``AutoConfig.for_model``
    returns it), each as (class, head, config, why)."""
    from transformers import AutoConfig

    try:
        plain = AutoConfig.for_model(spec.config.model_type)
    except Exception:  # the type's default config itself fails: no alternative
        plain = None
    configs = [(spec.config, "")]
    if plain is not None and plain.to_dict() != spec.config.to_dict():
        configs.append((plain, " from the default config as transformers returns it (optional towers left out)"))
    for config, where in configs:
        for cls, head, auto_name in _type_classes(config):
            if cls is tried and config is spec.config:
                continue
            yield cls, head, config, f"built {auto_name}'s class {cls.__name__} instead{where}"


def _type_classes(config) -> list[tuple[type, bool, str]]:
    """Every importable class the Auto tables map ``config``'s class to, in archlint's order."""
    import transformers

    found = []
    for auto_name in (*_AUTO_CLASS_ORDER, "AutoModel"):
        mapping = getattr(transformers, auto_name)._model_mapping
        if type(config) not in mapping:
            continue
        try:
            cls = _first_class(mapping[type(config)])
        except Exception:  # a class needing a missing package: the first attempt named it
            continue
        found.append((cls, auto_name != "AutoModel", auto_name))
    return found


def _first_class(mapped):
    """An Auto table entry: one class, or a tuple of classes (``funnel``: full and base) whose
    first is the one ``from_config`` builds when the config names no architecture."""
    return mapped[0] if isinstance(mapped, (tuple, list)) else mapped


def model_class(spec: ModelSpec) -> tuple[type, bool]:
    """The class to build and whether it has a task head (see :func:`model_class_and_reason`)."""
    cls, head, _ = model_class_and_reason(spec)
    return cls, head


def model_class_and_reason(spec: ModelSpec) -> tuple[type, bool, str]:
    """The class to build, whether it has a task head, and why it was chosen.

    ``architectures[0]`` when transformers has it, then remote code (only when trusted, and
    only for a config class transformers does not ship), then the class a user of the type loads:
    a composite multimodal type (one with a vision sub-config) its image-text-to-text class, so its
    towers are built; otherwise the causal-LM, image-text-to-text, seq2seq class in that order;
    then ``AutoModel`` (no head)."""
    import transformers

    config = spec.config
    architectures = getattr(config, "architectures", None) or []
    first = architectures[0] if architectures and isinstance(architectures[0], str) else None
    named = getattr(transformers, first, None) if first else None
    if isinstance(named, type) and issubclass(named, nn.Module):
        return named, True, "the config's architectures[0]"
    auto_map = getattr(config, "auto_map", None) or {}
    if isinstance(auto_map, dict) and auto_map and spec.trust_remote_code and not _is_native(config):
        reference = next((auto_map[k] for k in auto_map if k.startswith("AutoModelFor")), auto_map.get("AutoModel"))
        if reference:
            return (_remote_model_class(spec, reference), True,
                    f"the config's own code ({reference}; --trust-remote-code)")
    why = "a bare model type names no class" if spec.kind == "model_type" else "the config has no architectures"
    if _is_multimodal(config) and type(config) in transformers.AutoModelForImageTextToText._model_mapping:
        return (transformers.AutoModelForImageTextToText._model_mapping[type(config)], True,
                f"{why}; a multimodal type's image-text-to-text class (AutoModelForImageTextToText), "
                "towers included")
    candidates, unimportable, unimportable_errors = [], [], []
    for auto_name in (*_AUTO_CLASS_ORDER, "AutoModel"):
        mapping = getattr(transformers, auto_name)._model_mapping
        if type(config) not in mapping:
            continue
        try:
            candidates.append((_first_class(mapping[type(config)]), auto_name))
        except Exception as e:  # a class needing a missing package, or named but absent
            unimportable.append(_one_line(e))
            unimportable_errors.append(e)
    # A composite config (Llama4Config, Qwen3_5Config, MusicgenConfig) is mapped to a causal-LM
    # class that takes only a sub-config; the class that takes the whole config builds every
    # tower. Only when none does is the text class built, from the text sub-config.
    whole = [c for c in candidates if _takes_config(c[0], config)]
    text = [c for c in candidates if _takes_text_config(c[0], config)]
    if whole or text or candidates:
        cls, auto_name = (whole or text or candidates)[0]
        if auto_name == "AutoModel":
            return cls, False, f"{why} and the type has no task-head class; AutoModel"
        return cls, True, f"{why}; the type's {auto_name} class"
    # Sub-component configs (`siglip2_text_model`, `bridgetower_text_model`) are in no Auto
    # table: their own modeling module names the classes built from them.
    own = _own_model_classes(config)
    if own:
        cls, head = own[0]
        return cls, head, (f"{why}; a sub-component config in no Auto table: "
                           "the class its modeling module builds from it")
    missing = next((m for m in map(missing_package, unimportable_errors) if m), None)
    if missing:
        raise TargetError("missing-package", f"{spec.target}: {missing}")
    if unimportable:
        raise TargetError("build-failed", f"{spec.target}: the model class cannot be imported: {unimportable[0]}")
    raise TargetError("no-model-class", f"{spec.target}: transformers has no model class for {type(config).__name__}")


#: Preference among a modeling module's classes for one config class: a head first.
_OWN_CLASS_SUFFIXES = (("ForCausalLM", True), ("ForConditionalGeneration", True), ("LMHeadModel", True),
                       ("Model", False))


def _own_model_classes(config) -> list[tuple[type, bool]]:
    """``PreTrainedModel`` classes of the config's own modeling module whose ``config_class``
    is exactly the config's class, ordered by :data:`_OWN_CLASS_SUFFIXES`."""
    import importlib

    from transformers import PreTrainedModel

    package = type(config).__module__.rpartition(".")[0]
    name = type(config).__module__.rpartition(".")[2].replace("configuration_", "modeling_", 1)
    try:
        module = importlib.import_module(f"{package}.{name}")
    except Exception:  # a missing optional dependency: no class from here
        return []
    found = [cls for cls in vars(module).values()
             if isinstance(cls, type) and issubclass(cls, PreTrainedModel) and _config_class(cls) is type(config)]
    # the shared base (`ColQwen2PreTrainedModel`) holds no layers: a class another one derives from is no model
    found = [cls for cls in found if not any(other is not cls and issubclass(other, cls) for other in found)]
    ordered = []
    for suffix, head in _OWN_CLASS_SUFFIXES:
        ordered += [(cls, head) for cls in sorted(found, key=lambda c: c.__name__) if cls.__name__.endswith(suffix)]
    # then the other heads (`ColQwen2ForRetrieval`, `DepthAnythingForDepthEstimation`)
    ordered += [(cls, True) for cls in sorted(found, key=lambda c: c.__name__)
                if "For" in cls.__name__ and all(cls is not c for c, _ in ordered)]
    # then a sub-component class named for what it is (BltPatcher, DiaEncoder, SpeechT5HifiGan)
    named = {cls for cls, _ in ordered}
    ordered += [(cls, False) for cls in sorted(found, key=lambda c: c.__name__) if cls not in named]
    return ordered


def _takes_config(cls: type, config) -> bool:
    """True when ``cls`` is built from a config of ``config``'s class (or declares none)."""
    config_class = _config_class(cls)
    return config_class is None or isinstance(config, config_class)


def _config_class(cls: type):
    """``cls.config_class``; None when the class is transformers' placeholder for one that
    needs a missing package (any attribute access raises ImportError)."""
    try:
        return getattr(cls, "config_class", None)
    except ImportError:
        return None


def _is_native(config) -> bool:
    """A config class transformers itself ships (its model_type always builds natively)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return (getattr(config, "model_type", None) in CONFIG_MAPPING_NAMES
            and type(config).__module__.startswith("transformers."))


def _remote_model_class(spec: ModelSpec, reference) -> type:
    """The repository's own model class: from the local folder itself, or fetched from the Hub."""
    from pathlib import Path

    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from .resolve import local_remote_class

    if spec.kind == "local":
        return local_remote_class(Path(spec.config_file).parent, reference, spec.target)
    try:
        source = spec.config.name_or_path or spec.target
        return get_class_from_dynamic_module(reference, source, revision=spec.revision)
    except Exception as e:
        raise TargetError("remote-code", f"{spec.target}: loading the model's own code ({reference}) failed: "
                                         f"{_one_line(e)}") from e


def _is_multimodal(config) -> bool:
    """A composite config with a vision sub-config (``vision_config``...)."""
    subs = getattr(type(config), "sub_configs", None) or {}
    return any("vision" in key or "image" in key for key in subs)


def _takes_text_config(cls: type, config) -> bool:
    """True when ``cls`` is built from ``config``'s text sub-config, the case in which
    transformers' Auto classes hand it ``config.get_text_config()``."""
    text_config_class = (getattr(config, "sub_configs", None) or {}).get("text_config")
    return text_config_class is not None and _config_class(cls) is text_config_class


def _from_config(cls: type, config) -> nn.Module:
    if _takes_text_config(cls, config):
        config = config.get_text_config()
    if hasattr(cls, "_from_config"):
        return cls._from_config(config, dtype=config_dtype(config))
    return cls(config)  # remote code that is not a PreTrainedModel


def config_dtype(config) -> torch.dtype:
    """The dtype a model is built in: the config's ``dtype``, else bfloat16."""
    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.bfloat16


def _call_factory(spec: ModelSpec) -> nn.Module:
    try:
        result = spec.factory()
    except Exception as e:
        if _is_meta_unsafe(e):
            raise  # let _with_fallback retry with small factories on the CPU
        raise TargetError("factory-failed", f"{spec.target}: the factory raised {_one_line(e)}") from e
    if not isinstance(result, nn.Module):
        raise TargetError("factory-not-module",
                          f"{spec.target}: the factory returned a {type(result).__name__}, not an nn.Module")
    return result


def _with_fallback(spec: ModelSpec, make) -> tuple[nn.Module, str]:
    from transformers.initialization import meta_device_safe_creation_ops

    try:
        with torch.device("meta"), meta_device_safe_creation_ops():
            return make(), "meta"
    except TargetError:
        raise
    except Exception as first:
        missing = missing_package(first)
        if missing:
            raise TargetError("missing-package", f"{spec.target}: {missing}") from first
        if not _is_meta_unsafe(first):
            raise TargetError("build-failed",
                              f"{spec.target}: building the model failed: {_one_line(first)}") from first
    try:
        with _hybrid_meta(), meta_device_safe_creation_ops():
            return make(), "meta+cpu-factories"
    except TargetError:
        raise
    except Exception as e:
        raise TargetError("build-failed", f"{spec.target}: building the model on meta failed: {_one_line(e)}") from e


_REQUIRES = re.compile(r"(\w+) requires the (.+?) library,? but it was not found")
_PIP = re.compile(r"`pip install ([^`]+)`")


def missing_package(error: BaseException) -> str:
    """One line naming the optional package transformers' placeholder class asked for
    (``TimmBackbone requires the timm library but it was not found``), with transformers'
    own install command when its message has one; "" for any other error."""
    if not isinstance(error, ImportError):
        return ""
    match = _REQUIRES.search(str(error))
    if not match:
        return ""
    cls, package = match.groups()
    pip = _PIP.search(str(error))
    how = f"`pip install {pip.group(1)}`" if pip else "see transformers' installation notes for it"
    return f"{cls} needs the optional package {package}, which is not installed ({how}, then run again)"


def _is_meta_unsafe(error: BaseException) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("meta", "no data", "item()", "tolist", "cannot copy out"))


_FACTORIES = {
    "empty", "zeros", "ones", "full", "rand", "randn", "randint", "randperm", "arange",
    "linspace", "logspace", "tensor", "as_tensor", "eye", "normal",
}


class _SmallFactoriesOnCpu(TorchFunctionMode):
    """Tensor factories without an explicit device: small ones on CPU, large ones on meta."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in _FACTORIES and kwargs.get("device") is None:
            probe = func(*args, **{**kwargs, "device": "meta"})
            small = isinstance(probe, torch.Tensor) and probe.numel() < _FALLBACK_META_NUMEL
            return func(*args, **{**kwargs, "device": "cpu"}) if small else probe
        return func(*args, **kwargs)


@contextlib.contextmanager
def _hybrid_meta():
    """New parameters go to meta; small factory tensors stay on the CPU so that
    ``.item()``/``.tolist()`` work; parameters already on meta keep their identity
    (so ties survive)."""
    original = nn.Module.register_parameter

    def register_parameter(self, name, param):
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        original(self, name, param)

    nn.Module.register_parameter = register_parameter
    try:
        with _SmallFactoriesOnCpu():
            yield
    finally:
        nn.Module.register_parameter = original


def assert_no_storage(module: nn.Module, target: str, bound: int = STORAGE_BOUND) -> int:
    """Bytes of real storage held by parameters and buffers; fail above ``bound``."""
    seen: set[int] = set()
    real = 0
    worst = ("", 0)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.device.type == "meta" or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = tensor.numel() * tensor.element_size()
        real += size
        if size > worst[1]:
            worst = (name, size)
    if real > bound:
        raise TargetError(
            "allocated",
            f"{target}: the build allocated {real / 2**20:.1f} MiB of real tensors "
            f"(largest: {worst[0]}, {worst[1] / 2**20:.1f} MiB); archlint refuses to hold weights",
        )
    return real
