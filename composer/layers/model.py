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


def check_tokens(tokens, vocab: int | None, max_len: int | None) -> None:
    """Say what to change about a wrong input before torch fails deep inside a layer: token ids must be
    a (batch, length) integer tensor, neither empty, length at most max_len, ids below the spec's vocab
    (the padded rows of the embedding are not tokens). The id range costs one reduction and one sync;
    it is skipped while torch.compile traces."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype.is_complex \
            or tokens.dtype == torch.bool:
        got = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be an integer tensor of token ids, shape (batch, length); got {got}")
    if tokens.dim() != 2:
        raise ValueError(f"tokens must have shape (batch, length); got shape {tuple(tokens.shape)}"
                         + (": add a batch dimension with tokens[None]" if tokens.dim() == 1 else ""))
    batch, length = tokens.shape
    if batch == 0 or length == 0:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} are empty: give at least one sequence of one token")
    if max_len is not None and length > max_len:
        raise ValueError(f"sequence length {length} is past the model's max_len {max_len}: shorten the input "
                         "or raise max_len in the spec")
    if vocab is not None and not torch.compiler.is_compiling() and bool(((tokens < 0) | (tokens >= vocab)).any()):
        low, high = int(tokens.min()), int(tokens.max())
        raise ValueError(f"token ids must be in 0 .. {vocab - 1} (the spec's vocab); got ids from {low} to {high}")


class LanguageModel(nn.Module):
    """embedding -> layers -> norm -> head (the embedding matrix itself when tied)."""

    def __init__(self, vocab: int, d_model: int, layers: list[nn.Module], norm: nn.Module, tie_embeddings: bool,
                 token_vocab: int | None = None, max_len: int | None = None):
        super().__init__()
        self.token_vocab, self.max_len = token_vocab, max_len  # the unpadded vocab and the longest input
        self.embedding = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.head = None if tie_embeddings else nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (batch, length) -> logits (batch, length, padded vocab)."""
        check_tokens(tokens, self.token_vocab, self.max_len)
        x = self.embedding(tokens)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        weight = self.embedding.weight if self.head is None else self.head.weight
        return x @ weight.t()
