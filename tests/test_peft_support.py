"""archlint's table of LoRA layer types equals what the installed PEFT accepts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from archlint.lora.layers import is_lora_layer, lora_layer_types


class Holder(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.target = layer
        self.other = nn.Linear(4, 4)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)


LAYERS = {
    "Linear": lambda: nn.Linear(4, 4),
    "Embedding": lambda: nn.Embedding(8, 4),
    "Conv1d": lambda: nn.Conv1d(4, 4, 1),
    "Conv2d": lambda: nn.Conv2d(4, 4, 1),
    "Conv3d": lambda: nn.Conv3d(4, 4, 1),
    "MultiheadAttention": lambda: nn.MultiheadAttention(4, 1),
    "Conv1D": lambda: Conv1D(4, 4),
    "Wrapper": Wrapper,
    "LayerNorm": lambda: nn.LayerNorm(4),
    "ConvTranspose2d": lambda: nn.ConvTranspose2d(4, 4, 1),
    "Bilinear": lambda: nn.Bilinear(4, 4, 4),
}


@pytest.mark.parametrize("name", LAYERS)
def test_peft_accepts_exactly_the_listed_types(name):
    from peft import LoraConfig, get_peft_model

    with torch.device("meta"):
        model = Holder(LAYERS[name]())
    fan_in_fan_out = name == "Conv1D"
    try:
        get_peft_model(model, LoraConfig(r=2, target_modules=["target"], fan_in_fan_out=fan_in_fan_out))
        accepted = True
    except ValueError as e:
        assert "is not supported" in str(e)
        accepted = False
    assert accepted == is_lora_layer(LAYERS[name]()), name


def test_table_is_the_dispatch_set():
    assert set(lora_layer_types()) == {nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d,
                                       nn.MultiheadAttention, Conv1D}
