"""Quantization skip lists that keep transformers' defaults, computed by transformers itself.

A ``BitsAndBytesConfig(llm_int8_skip_modules=[...])`` list *replaces* the default skip
list that ``from_pretrained`` computes (``HfQuantizer.get_modules_to_not_convert``: tied
weights, the output embedding ``lm_head``, the last module, plus
``_keep_in_fp32_modules``), so advice of the form ``llm_int8_skip_modules=["router"]``
quietly quantizes ``lm_head``. Any skip list archlint prints is therefore the defaults as
transformers computes them on the meta model, plus the additions, never shorter.

Which modules bitsandbytes would quantize is transformers' own decision too:
``replace_with_bnb_linear`` converts a module when ``should_convert_module(name, skip)``
and its type is exactly ``nn.Linear`` or transformers' ``Conv1D`` (a Linear *subclass*,
such as a router class, and every embedding stay as they are). An addition is only
suggested for a module bitsandbytes would convert; it is the shortest dotted suffix of the
module's path that skips exactly the intended modules, checked with
``should_convert_module`` against every module of the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class SkipAdvice:
    """A bitsandbytes skip list for keeping ``kept`` (module paths) unquantized."""

    defaults: tuple[str, ...]  # what transformers skips when the user gives no list
    additions: tuple[str, ...]  # the patterns that keep ``kept`` out
    kept: tuple[str, ...]  # the modules bitsandbytes would otherwise convert

    @property
    def skip_list(self) -> tuple[str, ...]:
        return (*self.defaults, *(a for a in self.additions if a not in self.defaults))

    def text(self) -> str:
        """``BitsAndBytesConfig(llm_int8_skip_modules=["lm_head", ".mlp.gate"], ...)`` with a comment."""
        entries = ", ".join(f'"{e}"' for e in self.skip_list)
        return (f"BitsAndBytesConfig(llm_int8_skip_modules=[{entries}], ...)"
                f"  # transformers' default skip list ({', '.join(self.defaults) or 'empty'}) plus "
                f"{', '.join(self.additions)}: a list replaces the defaults")


def default_skip_modules(model: nn.Module) -> tuple[str, ...] | None:
    """What ``from_pretrained`` keeps unquantized with bitsandbytes when the user gives no
    skip list, by transformers' own ``get_modules_to_not_convert``; None when ``model`` is
    not a transformers model (no from_pretrained, no default)."""
    from transformers import PreTrainedModel
    from transformers.quantizers.base import HfQuantizer

    if not isinstance(model, PreTrainedModel):
        return None
    keep_in_fp32 = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return tuple(sorted(HfQuantizer.get_modules_to_not_convert(model, None, keep_in_fp32 or None)))


def converted_by_bnb(model: nn.Module, skip: Sequence[str] | None) -> list[str]:
    """The module paths ``replace_with_bnb_linear`` would replace with ``skip`` as the skip list."""
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.quantizers_utils import should_convert_module

    return [name for name, module in model.named_modules()
            if (type(module) is nn.Linear or isinstance(module, Conv1D))
            and should_convert_module(name, list(skip or []) or None)]


def bnb_skip_advice(model: nn.Module, paths: Iterable[str]) -> SkipAdvice | None:
    """The skip list that keeps the modules at or under ``paths`` unquantized, or None when
    bitsandbytes would convert none of them anyway (or ``model`` is not a transformers model)."""
    defaults = default_skip_modules(model)
    if defaults is None:
        return None
    roots = tuple(paths)
    converted = converted_by_bnb(model, defaults)
    kept = [p for p in converted if any(p == r or p.startswith(r + ".") for r in roots)]
    if not kept:
        return None
    others = set(converted) - set(kept)
    additions: list[str] = []
    for path in kept:
        if any(_skips(a, path) for a in additions):
            continue
        additions.append(_shortest_suffix(path, others))
    advice = SkipAdvice(defaults, tuple(additions), tuple(kept))
    _check(model, advice, set(converted))
    return advice


def _skips(pattern: str, path: str) -> bool:
    from transformers.quantizers.quantizers_utils import should_convert_module

    return not should_convert_module(path, [pattern])


def _shortest_suffix(path: str, others: set[str]) -> str:
    """``.mlp.gate`` for ``model.layers.3.mlp.gate``: the shortest suffix of at least two
    names, starting at a dot, that skips the path and none of ``others``; the escaped full
    path if none does."""
    parts = path.split(".")
    for start in range(len(parts) - 2, 0, -1):
        suffix = "." + ".".join(parts[start:])
        if not any(part.isdigit() for part in parts[start:]) and not any(_skips(suffix, o) for o in others):
            return suffix
    return re.escape(path)


def _check(model: nn.Module, advice: SkipAdvice, converted: set[str]) -> None:
    """transformers' own answer for the advised list: the kept modules are not converted,
    every other module is converted exactly as with the defaults."""
    after = set(converted_by_bnb(model, advice.skip_list))
    if after != converted - set(advice.kept):
        raise AssertionError(f"skip list {advice.skip_list} does not keep exactly {advice.kept} out of bitsandbytes")
