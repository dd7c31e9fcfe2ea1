"""Let transformers' loader write into the meta model itself, then put everything back.

The loader replaces each loaded parameter with a new one (``setattr`` on its module), flags
parameters and modules (``_is_hf_initialized``), ties weights again and records the
conversions it used on the model. On a meta model all of that is bookkeeping: a structural
copy to absorb it costs more than the headers being checked. :func:`restored_after` keeps
a shallow record of what the loader can touch -- each module's attributes and the
contents of the dicts and sets among them (``_parameters``, ``_buffers``, ``_modules``, hooks, tied-weight
maps...), and which attributes each parameter and buffer carries -- and restores it on
exit, whatever happened in between. Only for a loader run that does not change the module
structure (no quantizer's ``preprocess_model``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def restored_after(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` itself; on exit every module, parameter and buffer reached from it is as it
    was on entry (same objects in the same places, same attributes)."""
    layouts: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple of names per attribute layout
    modules = []
    for module in model.modules():
        attributes = module.__dict__
        names = tuple(attributes)
        values = tuple(attributes.values())
        contents = {i: value.copy() for i, value in enumerate(values) if isinstance(value, _CONTAINERS) and value}
        modules.append((module, layouts.setdefault(names, names), values, contents))
    tensors = [(t, tuple(t.__dict__)) for _, t in model.named_parameters(remove_duplicate=False)]
    tensors += [(t, tuple(t.__dict__)) for _, t in model.named_buffers(remove_duplicate=False)]
    try:
        yield model
    finally:
        for module, names, values, contents in modules:
            module.__dict__.clear()
            module.__dict__.update(zip(names, values, strict=True))
            for i, value in enumerate(values):
                if isinstance(value, _CONTAINERS):
                    value.clear()
                    if i in contents:
                        value.update(contents[i])
        for tensor, keys in tensors:
            for key in [k for k in tensor.__dict__ if k not in keys]:
                del tensor.__dict__[key]


#: Mutable containers a module keeps among its attributes (parameter, buffer and submodule
#: dicts, hook dicts, tied-weight maps, the non-persistent buffer set).
_CONTAINERS = (dict, set)
