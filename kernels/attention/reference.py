"""Plain-PyTorch reference of softmax attention: rotary embeddings, causal / sliding-window / full
masks and grouped-query attention.

Notation: b batch, L query length, S key length, Hq query heads, Hkv key/value heads
(Hq % Hkv == 0; query head h reads kv head h // (Hq // Hkv)), D head dim (Dv for values).
    q (b, L, Hq, D); k (b, S, Hkv, D); v (b, S, Hkv, Dv); y (b, L, Hq, Dv); scale defaults to D^-0.5.

Positions: queries are aligned to the END of the keys (flash-attention's bottom-right convention),
so query t sits at position i = t + S - L; with L == S that is i = t, and with L == 1 it is the
newest key, which is what decoding against a cache needs. Causal attention needs S >= L.

Masks, for a query at position i and a key at position j:
    causal               j <= i
    causal, window w     i - w < j <= i         (the w newest keys, the query's own included)
    non-causal           every j
    non-causal, window w |i - j| < w           (w - 1 keys each side and the query's own)
"""

import torch


def rope_frequencies(head_dim: int, max_len: int, base: float = 10000.0, dtype=torch.float32):
    """cos, sin of the rotary angles, each (max_len, head_dim // 2): angle[p, f] = p * base^(-2f / head_dim).
    Computed in fp64, returned in `dtype`."""
    inv_freq = base ** (-torch.arange(0, head_dim // 2, dtype=torch.float64) * 2.0 / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Rotate x (b, L, H, D) by the angles of positions offset .. offset + L - 1 (GPT-NeoX rotate-half:
    channel f pairs with channel f + D/2)."""
    L, half = x.shape[1], x.shape[-1] // 2
    c = cos[offset:offset + L].to(x.dtype)[None, :, None, :]  # (1, L, 1, D/2)
    s = sin[offset:offset + L].to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def attention_mask(L: int, S: int, causal: bool = True, window=None, device=None) -> torch.Tensor:
    """Boolean (L, S) mask, True where query t may attend key s (conventions in the module docstring)."""
    if causal and S < L:
        raise ValueError(f"causal attention needs at least as many keys ({S}) as queries ({L})")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    i = torch.arange(L, device=device)[:, None] + (S - L)  # query positions
    j = torch.arange(S, device=device)[None, :]
    mask = torch.ones(L, S, dtype=torch.bool, device=device)
    if causal:
        mask &= j <= i
        if window is not None:
            mask &= j > i - window
    elif window is not None:
        mask &= (i - j).abs() < window
    return mask


def _repeat_kv(t: torch.Tensor, n_q_heads: int) -> torch.Tensor:
    """(b, S, Hkv, D) -> (b, S, Hq, D): query head h reads kv head h // (Hq // Hkv)."""
    n_kv_heads = t.shape[2]
    if n_q_heads % n_kv_heads:
        raise ValueError(f"query heads ({n_q_heads}) must be a multiple of kv heads ({n_kv_heads})")
    return t.repeat_interleave(n_q_heads // n_kv_heads, dim=2)


def attention_quadratic(q, k, v, causal=True, window=None, scale=None):
    """Explicit softmax of the masked scores. Shapes in the module docstring; returns y (b, L, Hq, Dv)."""
    L, Hq, D = q.shape[1], q.shape[2], q.shape[3]
    scale = D ** -0.5 if scale is None else scale
    k, v = _repeat_kv(k, Hq), _repeat_kv(v, Hq)
    scores = torch.einsum("bthd,bshd->bhts", q, k) * scale  # (b, Hq, L, S)
    mask = attention_mask(L, k.shape[1], causal, window, q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.einsum("bhts,bshd->bthd", torch.softmax(scores, dim=-1), v)


def attention_sdpa(q, k, v, causal=True, window=None, scale=None):
    """Same as `attention_quadratic`, through torch's scaled_dot_product_attention: is_causal when the
    mask is plain causal with L == S (where top-left and bottom-right alignment agree), otherwise an
    explicit boolean mask."""
    L, S, Hq = q.shape[1], k.shape[1], q.shape[2]
    k, v = _repeat_kv(k, Hq), _repeat_kv(v, Hq)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, H, len, D)
    if causal and window is None and L == S:
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:
        mask = attention_mask(L, S, causal, window, q.device)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return y.transpose(1, 2)


def attention_step(q_t, k_cache, v_cache, window=None, scale=None):
    """One decoding step: q_t (b, Hq, D) against caches k_cache (b, S, Hkv, D), v_cache (b, S, Hkv, Dv)
    that already hold the current step as their last entry. Causal by construction; with a window
    only the last `window` entries are read. Returns y_t (b, Hq, Dv)."""
    Hq, D = q_t.shape[1], q_t.shape[2]
    scale = D ** -0.5 if scale is None else scale
    if window is not None:
        k_cache, v_cache = k_cache[:, -window:], v_cache[:, -window:]
    k, v = _repeat_kv(k_cache, Hq), _repeat_kv(v_cache, Hq)
    scores = torch.einsum("bhd,bshd->bhs", q_t, k) * scale
    return torch.einsum("bhs,bshd->bhd", torch.softmax(scores, dim=-1), v)
