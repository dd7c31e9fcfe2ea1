"""Tiny models for PAD001's VALID/INVALID examples (archlint builds them on meta)."""

from __future__ import annotations

from torch import nn


class _TinyLM(nn.Module):
    vocab = 0

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(self.vocab, 32)
        self.pos = nn.Embedding(100, 32)  # positions, not a vocabulary: never flagged
        self.block = nn.Linear(32, 32)
        self.head = nn.Linear(32, self.vocab, bias=False)


class UnpaddedTinyLM(_TinyLM):
    """A 1000-token vocabulary: 1000 is not a multiple of 64."""

    vocab = 1000


class PaddedTinyLM(_TinyLM):
    """The same model with the vocabulary padded to 1024."""

    vocab = 1024
