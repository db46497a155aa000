"""Softmax attention with grouped-query heads, rotary positions and an optional sliding window."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.attention.decode_plan import AttentionDecodePlan, decode_constants, fits
from composer.kernels.attention.reference import apply_rope, attention_sdpa, rope_frequencies
from composer.kernels.plan import runs_generated
from composer.layers.cache import CacheEntry


def rope_at(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`apply_rope` at per-token positions (b, L): rows of a left-padded batch start at different columns."""
    half = x.shape[-1] // 2
    c, s = cos[positions].to(x.dtype)[:, :, None, :], sin[positions].to(x.dtype)[:, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def slot_positions(lengths: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which position each cache slot holds, and whether it holds one, for rows that have seen `lengths`
    (b,) tokens: position p lives in slot p % slots (a ring buffer when the window is shorter than the cache)."""
    slot = torch.arange(slots, device=lengths.device)[None]
    last = lengths[:, None] - 1
    return last - (last - slot) % slots, slot < lengths[:, None]


def _attend(q, keys, values, mask, padded: bool = True):
    """Softmax attention of q (b, L, Hq, D) over keys/values (b, S, Hkv, D) under mask (b, L, S); a query
    with no key to read (padding, when `padded`) gets zeros."""
    group = q.shape[2] // keys.shape[2]
    keys, values = (t.repeat_interleave(group, dim=2).transpose(1, 2) for t in (keys, values))
    y = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask[:, None])
    y = y.transpose(1, 2)
    return torch.where(mask.any(-1)[:, :, None, None], y, 0) if padded else y


class Attention(nn.Module):
    """`backend` as for the other mixers: "triton" (and "auto" on CUDA tensors, where the plan put the layer on the
    kernels) runs a decoding step's read of the cache in the generated kernels; "reference" torch's SDPA."""

    backend = "auto"
    decode_plan = None  # the plan's AttentionDecodePlan, set by `build` (without it: from the layer's sizes)

    def __init__(self, d_model: int, heads: int, kv_heads: int, head_dim: int, max_len: int, causal: bool = True,
                 window: int | None = None, rope: bool = True, rope_base: float = 10000.0, bias: bool = False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.window = causal, window
        self.layout_sizes = dict(kv_heads=kv_heads, head_dim=head_dim, max_len=max_len, causal=causal, window=window,
                                 rope=rope)
        self.q_proj = nn.Linear(d_model, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, d_model, bias=bias)
        self.rope, self.max_len, self.rope_base = rope, max_len, rope_base
        self.planned = causal and fits(head_dim) is None
        if rope:
            cos, sin = rope_frequencies(head_dim, max_len, rope_base)
            # Buffers, not parameters: derived from the spec, not learned, not saved.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def receive_plan(self, entry) -> None:
        self.decode_plan = entry

    def init_buffers(self) -> None:
        """Compute the rotary tables again, for a loader that made the layer without them (Hugging Face's
        from_pretrained makes modules on the meta device and loads only the saved tensors)."""
        if self.rope:
            cos, sin = rope_frequencies(self.head_dim, self.max_len, self.rope_base)
            self.rope_cos, self.rope_sin = cos.to(self.q_proj.weight.device), sin.to(self.q_proj.weight.device)

    @staticmethod
    def cache_layout(length: int, kv_heads: int, head_dim: int, max_len: int, causal: bool = True,
                     window: int | None = None, rope: bool = True, **_):
        """Keys and values: `length` slots, or a ring buffer of `window` slots for a sliding window."""
        if not causal:
            return "non-causal attention reads later tokens, so it has no decoding step"
        if rope and length > max_len:
            raise ValueError(f"a cache of {length} tokens is longer than max_len {max_len}, the last position "
                             "the rotary embedding is defined for")
        slots = min(window, length) if window else length
        return (CacheEntry("key", (slots, kv_heads, head_dim), "activation"),
                CacheEntry("value", (slots, kv_heads, head_dim), "activation"))

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """x (b, L, d_model). With `cache` and `where` (the call's Positions) the queries read the cached keys
        and the call's own, and the call's keys join the cache."""
        if cache is not None:
            return self._forward_cached(x, cache, where)
        b, L, _ = x.shape
        q = self.q_proj(x).view(b, L, self.heads, self.head_dim)
        k = self.k_proj(x).view(b, L, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, L, self.kv_heads, self.head_dim)
        if self.rope:
            q = apply_rope(q, self.rope_cos, self.rope_sin)
            k = apply_rope(k, self.rope_cos, self.rope_sin)
        y = attention_sdpa(q, k, v, causal=self.causal, window=self.window)
        return self.o_proj(y.reshape(b, L, self.heads * self.head_dim))

    def _forward_cached(self, x: torch.Tensor, cache: dict, where) -> torch.Tensor:
        b, L, _ = x.shape
        q = self.q_proj(x).view(b, L, self.heads, self.head_dim)
        k = self.k_proj(x).view(b, L, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, L, self.kv_heads, self.head_dim)
        if self.rope:
            q = rope_at(q, self.rope_cos, self.rope_sin, where.positions)
            k = rope_at(k, self.rope_cos, self.rope_sin, where.positions)
        key_cache, value_cache = cache["key"], cache["value"]
        slots = key_cache.shape[1]
        if L == 1 and not where.padded:  # decoding: write the step's key, then read the cache alone
            self._write(key_cache, value_cache, k, v, where, slots)
            if runs_generated(self.backend, x.is_cuda, self.planned):
                return self._decode_read(q[:, 0], key_cache, value_cache, torch.clamp(where.past + 1, max=slots))
            key_pos, held = slot_positions(where.past + 1, slots)
            keys, values = key_cache.to(q.dtype), value_cache.to(q.dtype)
        else:  # prefill: the cached keys and the call's (a window shorter than the call would overwrite some)
            key_pos, held = slot_positions(where.past, slots)
            key_pos, held = torch.cat([key_pos, where.positions], 1), torch.cat([held, where.valid], 1)
            keys, values = torch.cat([key_cache.to(k.dtype), k], 1), torch.cat([value_cache.to(v.dtype), v], 1)
        query_pos = where.positions[:, :, None]
        mask = held[:, None, :] & (key_pos[:, None, :] <= query_pos)
        if self.window is not None:
            mask &= key_pos[:, None, :] > query_pos - self.window
        y = _attend(q, keys, values, mask & where.valid[:, :, None] if where.padded else mask, where.padded)
        if L != 1 or where.padded:
            self._write(key_cache, value_cache, k, v, where, slots)
        return self.o_proj(y.reshape(b, L, self.heads * self.head_dim))

    def _decode_read(self, q, key_cache, value_cache, filled) -> torch.Tensor:
        """The step's read of the cache in the generated kernels: each row's query against its filled slots (in
        a sliding window's ring buffer, the window's keys, whatever their order), then o_proj."""
        from composer.kernels.attention.decode import attention_decode_triton  # imports triton only when used
        if self.decode_plan is None:
            self.decode_plan = AttentionDecodePlan(decode_constants(self.head_dim, self.heads, self.kv_heads))
        y = attention_decode_triton(self.decode_plan.constants, q, key_cache.to(q.dtype), value_cache.to(q.dtype),
                                    filled)
        return self.o_proj(y.reshape(q.shape[0], 1, self.heads * self.head_dim))

    @staticmethod
    def _write(key_cache, value_cache, k, v, where, slots: int) -> None:
        """Put the call's real keys and values in their slots; of a call longer than the cache only the last
        `slots` positions are kept (each slot written once). A step without padding (one real token a row)
        writes by row and slot index alone, with no host sync (the masked form counts its entries there)."""
        if k.shape[1] == 1 and not where.padded:
            rows, slot = torch.arange(k.shape[0], device=k.device), where.positions[:, 0] % slots
            key_cache[rows, slot] = k[:, 0].to(key_cache.dtype)
            value_cache[rows, slot] = v[:, 0].to(value_cache.dtype)
            return
        end = where.past + where.valid.sum(1)
        keep = where.valid & (where.positions >= end[:, None] - slots)
        rows = torch.arange(k.shape[0], device=k.device)[:, None].expand_as(keep)
        slot = where.positions % slots
        key_cache[rows[keep], slot[keep]] = k[keep].to(key_cache.dtype)
        value_cache[rows[keep], slot[keep]] = v[keep].to(value_cache.dtype)
