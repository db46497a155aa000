"""The decoding cache: each causal layer's buffers, allocated once for (batch, cache length).

A causal mixer layer describes its buffers with `cache_layout(length, **sizes)` (a static method taking the
layer's constructor arguments), so the plan can count them without building the layer and the model
allocates exactly what the plan counted. A bidirectional layer's `cache_layout` returns a reason string
instead: it reads later tokens, so it cannot decode one token at a time.

Positions follow Hugging Face's conventions: `attention_mask` (b, L) is 1 on real tokens and 0 on
padding, padding sits on the left of a prompt, and a row's position is the count of its real tokens
before it (position_ids = cumsum(attention_mask) - 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# An entry's dtype: "state" (a recurrent state: fp32 unless the cache says otherwise) or "activation"
# (inputs kept for later steps, conv history and keys/values: the activations' dtype).
DTYPE_ROLES = ("state", "activation")


@dataclass(frozen=True)
class CacheEntry:
    """One buffer of one layer: its name, its shape per sequence (no batch axis) and its dtype role."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "state"

    def nbytes(self, batch: int, dtypes: dict[str, torch.dtype]) -> int:
        return batch * math.prod(self.shape) * dtypes[self.dtype].itemsize


def entry_bytes(entries, batch: int, activation_bytes: int, state_bytes: int = 4) -> int:
    """Bytes of `entries` for `batch` sequences, without allocating them."""
    sizes = {"state": state_bytes, "activation": activation_bytes}
    return sum(batch * math.prod(e.shape) * sizes[e.dtype] for e in entries)


@dataclass
class Positions:
    """Where the tokens of one forward call sit. valid (b, L) bool: real tokens; positions (b, L) long: each
    token's position in its row (padding: 0); past (b,) long: real tokens each row held before the call;
    padded: whether any token is padding (decided once a call, so layers skip the masking when none is)."""

    valid: torch.Tensor
    positions: torch.Tensor
    past: torch.Tensor
    padded: bool = True

    def keep(self, t: torch.Tensor, fill=0) -> torch.Tensor:
        """t (b, L, ...) with padding's entries replaced by `fill`; t itself when the call has no padding."""
        if not self.padded:
            return t
        return torch.where(self.valid.view(*self.valid.shape, *([1] * (t.dim() - 2))), t, fill)


class ModelCache:
    """Every layer's buffers (one dict a layer, {} for a layer without a cache) and the real tokens each row
    has seen. Layers update their buffers in place; the model advances `lengths` after each call. The buffers
    and `lengths` stay the same tensors for the cache's life (reset zeroes them), so a CUDA graph captured over
    them (DecodeGraph) stays valid."""

    def __init__(self, layers: list[dict[str, torch.Tensor]], batch: int, length: int, device):
        self.layers, self.batch, self.length = layers, batch, length
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.decode_graph = None  # generate()'s DecodeGraph over these buffers, once made

    @classmethod
    def allocate(cls, layouts: list[tuple[CacheEntry, ...]], batch: int, length: int, device=None,
                 activation_dtype: torch.dtype = torch.float32, state_dtype: torch.dtype = torch.float32):
        dtypes = {"state": state_dtype, "activation": activation_dtype}
        layers = [{e.name: torch.zeros(batch, *e.shape, dtype=dtypes[e.dtype], device=device) for e in entries}
                  for entries in layouts]
        return cls(layers, batch, length, device)

    def nbytes(self) -> int:
        """Bytes of the layers' buffers (the per-row token counts aside)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.values())

    def positions(self, attention_mask: torch.Tensor | None, batch: int, length: int, device) -> Positions:
        """The Positions of the next call's `length` tokens (attention_mask None: all real)."""
        if batch != self.batch:
            raise ValueError(f"the cache holds {self.batch} sequences; the call has {batch}")
        padded = attention_mask is not None
        if attention_mask is None:
            valid = torch.ones(batch, length, dtype=torch.bool, device=device)
        else:
            if attention_mask.shape != (batch, length):
                raise ValueError(f"attention_mask must be (batch, length) = {(batch, length)}; got "
                                 f"{tuple(attention_mask.shape)}")
            valid = attention_mask.to(device=device, dtype=torch.bool)
            padded = not bool(valid.all())
        positions = self.lengths[:, None] + valid.long().cumsum(1) - 1
        return Positions(valid, positions.clamp(min=0) * valid, self.lengths.clone(), padded)

    def step_positions(self) -> Positions:
        """The Positions of a decoding step, one real token a row, made on the device from `lengths` alone
        (no host sync, so a CUDA graph can capture it)."""
        valid = torch.ones(self.batch, 1, dtype=torch.bool, device=self.lengths.device)
        return Positions(valid, self.lengths[:, None].clone(), self.lengths.clone(), padded=False)

    def advance(self, where: Positions) -> None:
        self.lengths += where.valid.sum(1)

    def reset(self) -> None:
        """Empty the cache for new sequences (the buffers are reused, not reallocated)."""
        for layer in self.layers:
            for t in layer.values():
                t.zero_()
        self.lengths.zero_()


def no_decode_reason(layout) -> str | None:
    """A layer's `cache_layout` result: the reason it cannot decode, or None when it gave entries."""
    return layout if isinstance(layout, str) else None
