"""Softmax attention with grouped-query heads, rotary positions and an optional sliding window."""

from __future__ import annotations

import torch
from torch import nn

from composer.kernels.attention.reference import apply_rope, attention_sdpa, rope_frequencies


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int, kv_heads: int, head_dim: int, max_len: int, causal: bool = True,
                 window: int | None = None, rope: bool = True, rope_base: float = 10000.0, bias: bool = False):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.window = causal, window
        self.q_proj = nn.Linear(d_model, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, d_model, bias=bias)
        self.rope, self.max_len, self.rope_base = rope, max_len, rope_base
        if rope:
            cos, sin = rope_frequencies(head_dim, max_len, rope_base)
            # Buffers, not parameters: derived from the spec, not learned, not saved.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def init_buffers(self) -> None:
        """Compute the rotary tables again, for a loader that made the layer without them (Hugging Face's
        from_pretrained makes modules on the meta device and loads only the saved tensors)."""
        if self.rope:
            cos, sin = rope_frequencies(self.head_dim, self.max_len, self.rope_base)
            self.rope_cos, self.rope_sin = cos.to(self.q_proj.weight.device), sin.to(self.q_proj.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, L, _ = x.shape
        q = self.q_proj(x).view(b, L, self.heads, self.head_dim)
        k = self.k_proj(x).view(b, L, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, L, self.kv_heads, self.head_dim)
        if self.rope:
            q = apply_rope(q, self.rope_cos, self.rope_sin)
            k = apply_rope(k, self.rope_cos, self.rope_sin)
        y = attention_sdpa(q, k, v, causal=self.causal, window=self.window)
        return self.o_proj(y.reshape(b, L, self.heads * self.head_dim))
