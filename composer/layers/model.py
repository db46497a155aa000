"""Block (pre-norm residual mixer + channel mixer) and the language model around a schedule."""

from __future__ import annotations

import torch
from torch import nn

from composer.layers.cache import ModelCache, no_decode_reason
from composer.layers.generation import generate


class Block(nn.Module):
    """x + mixer(norm(x)), then + channel(norm(x)) when the block has a channel mixer."""

    def __init__(self, mixer: nn.Module, mixer_norm: nn.Module, channel: nn.Module | None = None,
                 channel_norm: nn.Module | None = None):
        super().__init__()
        self.mixer_norm, self.mixer = mixer_norm, mixer
        self.channel_norm, self.channel = channel_norm, channel

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """With `cache` (the mixer's buffers) and `where` (the call's Positions) the mixer continues its cache;
        a mixer with `adds_residual` takes x and the norm, and returns x plus its output."""
        if cache is None:
            x = x + self.mixer(self.mixer_norm(x))
        elif getattr(self.mixer, "adds_residual", False):  # the mixer norms x and adds it itself (in its kernels)
            x = self.mixer(x, cache, where, residual=x, norm=self.mixer_norm)
        else:
            x = x + self.mixer(self.mixer_norm(x), cache, where)
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
    """embedding -> layers -> norm -> head (the embedding matrix itself when tied).

    vocab_size: the real vocabulary (default `vocab`, the padded one): inputs must be below it, and `generate`
    never picks a padding id. max_len: the longest input (None: any).
    """

    def __init__(self, vocab: int, d_model: int, layers: list[nn.Module], norm: nn.Module, tie_embeddings: bool,
                 vocab_size: int | None = None, max_len: int | None = None):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.head = None if tie_embeddings else nn.Linear(d_model, vocab, bias=False)
        self.vocab_size = vocab_size or vocab

    def forward(self, tokens: torch.Tensor, cache: ModelCache | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (batch, length) -> logits (batch, length, padded vocab).

        With `cache` (from `allocate_cache`) the tokens continue the cached sequences, which the call extends:
        a prompt's prefill (in one call or several) and then one token a call. attention_mask (batch, length):
        1 on real tokens, 0 on left padding (Hugging Face's convention); padding changes no cache and gets
        the logits of nothing in particular.
        """
        check_tokens(tokens, self.vocab_size, self.max_len)
        if cache is None:
            if attention_mask is not None and not bool(attention_mask.bool().all()):
                raise ValueError("attention_mask with padding needs a cache (allocate_cache)")
            x = self.embedding(tokens)
            for layer in self.layers:
                x = layer(x)
            return self._logits(x)
        where = cache.positions(attention_mask, *tokens.shape, tokens.device)
        if int((where.past + where.valid.sum(1)).max()) > cache.length:
            raise ValueError(f"the cache holds {cache.length} tokens a sequence: allocate a longer one")
        x = where.keep(self.embedding(tokens))
        for layer, buffers in zip(self.layers, cache.layers):
            x = where.keep(layer(x, buffers, where))  # padding stays zero in every layer
        cache.advance(where)
        return self._logits(x)

    def decode_step(self, tokens: torch.Tensor, cache: ModelCache) -> torch.Tensor:
        """One decoding step: tokens (batch, 1), a real token a row, continuing `cache` -> logits (batch, 1,
        padded vocab), the same as `self(tokens, cache=cache)`. It checks nothing on the host and reads no
        tensor's value there (the caller keeps the ids in range and the cache long enough), so the step can be
        captured in a CUDA graph (DecodeGraph) with the cache's buffers as its static state."""
        where = cache.step_positions()
        x = self.embedding(tokens)
        for layer, buffers in zip(self.layers, cache.layers):
            x = layer(x, buffers, where)
        cache.lengths += 1
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        weight = self.embedding.weight if self.head is None else self.head.weight
        return x @ weight.t()

    def cache_layouts(self, length: int) -> list:
        """Each layer's cache entries for sequences of up to `length` tokens; ValueError naming the first layer
        that cannot decode."""
        layouts = []
        for index, layer in enumerate(self.layers):
            entries = layer.mixer.cache_entries(length) if hasattr(layer.mixer, "cache_entries") else None
            reason = no_decode_reason(entries) if entries is not None else "its mixer has no decoding step"
            if reason is not None:
                raise ValueError(f"layer {index} ({type(layer.mixer).__name__}) cannot decode: {reason}; "
                                 "generate() and the cache need causal sequence mixers")
            layouts.append(entries)
        return layouts

    def allocate_cache(self, batch: int, length: int, device=None, dtype: torch.dtype | None = None,
                       state_dtype: torch.dtype = torch.float32) -> ModelCache:
        """Every layer's cache for `batch` sequences of up to `length` tokens, allocated once. dtype: the
        conv inputs' and keys/values' (default: the embedding's); state_dtype: the recurrent states'."""
        weight = self.embedding.weight
        return ModelCache.allocate(self.cache_layouts(length), batch, length, device or weight.device,
                                   dtype or weight.dtype, state_dtype)

    generate = generate
