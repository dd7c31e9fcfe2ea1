"""What PEFT's LoRA can wrap, and what it cannot.

PEFT dispatches on ``isinstance`` of the *target module* (``peft/tuners/lora/layer.py``,
``dispatch_default``): a module that merely holds an ``nn.Linear`` is refused with
"Target module … is not supported". The tuple below is that dispatch table for
unquantized models; ``tests/test_peft_support.py`` holds it equal to the installed PEFT
by running ``get_peft_model`` on one tiny module of each kind.
"""

from __future__ import annotations

from functools import cache

from torch import nn


@cache
def lora_layer_types() -> tuple[type, ...]:
    """Module types PEFT LoRA accepts as ``target_modules`` (base layers, unquantized)."""
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, Conv1D)


def is_lora_layer(module: nn.Module) -> bool:
    return isinstance(module, lora_layer_types())


def is_linear_like(module: nn.Module) -> bool:
    """A dense projection PEFT and bitsandbytes treat as a Linear (transformers' Conv1D too)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))
