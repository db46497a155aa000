"""Block (pre-norm residual mixer + channel mixer) and the language model around a schedule."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """x + mixer(norm(x)), then + channel(norm(x)) when the block has a channel mixer."""

    def __init__(self, mixer: nn.Module, mixer_norm: nn.Module, channel: nn.Module | None = None,
                 channel_norm: nn.Module | None = None):
        super().__init__()
        self.mixer_norm, self.mixer = mixer_norm, mixer
        self.channel_norm, self.channel = channel_norm, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.mixer_norm(x))
        if self.channel is not None:
            x = x + self.channel(self.channel_norm(x))
        return x


class LanguageModel(nn.Module):
    """embedding -> layers -> norm -> head (the embedding matrix itself when tied)."""

    def __init__(self, vocab: int, d_model: int, layers: list[nn.Module], norm: nn.Module, tie_embeddings: bool):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.head = None if tie_embeddings else nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (batch, length) -> logits (batch, length, padded vocab)."""
        x = self.embedding(tokens)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        weight = self.embedding.weight if self.head is None else self.head.weight
        return x @ weight.t()
