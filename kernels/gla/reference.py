"""Plain-PyTorch reference of gated linear attention (GLA; Yang et al., 2024): a decay per key channel.

    S_t = diag(a_t) S_{t-1} + k_t v_t^T,    o_t = S_t^T q_t

where a_t = exp(log_a_t) in (0, 1] decays each key channel of the state on its own (a scalar decay per head
is SSD's; per key channel is GLA's, Mamba-1's and HGRN-2's). The layer scales q by K^-1/2 and makes log_a
from its low-rank gate; here they are inputs.

Notation: b batch, L length, H heads, K key dim, V value dim.
    q, k, log_a (b, L, H, K) with log_a <= 0; v (b, L, H, V). State S (b, H, K, V).

Forms: `gla_recurrent` (the definition, one step at a time), `gla_chunked` (each chunk in closed form from
the state entering it: the definition of what the kernels compute), `gla_step` (one decoding step).
"""

from __future__ import annotations

import torch


def gla_step(state, q_t, k_t, v_t, log_a_t):
    """One step: q_t, k_t, log_a_t (b, H, K), v_t (b, H, V), state (b, H, K, V). Returns (o_t (b, H, V), the
    new state)."""
    state = log_a_t.exp()[..., None] * state + k_t[..., :, None] * v_t[..., None, :]
    return torch.einsum("bhk,bhkv->bhv", q_t, state), state


def gla_recurrent(q, k, v, log_a, initial_state=None):
    """The recurrence, token by token. Returns (o (b, L, H, V), the final state (b, H, K, V))."""
    b, L, H, K = q.shape
    state = q.new_zeros(b, H, K, v.shape[-1]) if initial_state is None else initial_state
    outputs = []
    for t in range(L):
        o_t, state = gla_step(state, q[:, t], k[:, t], v[:, t], log_a[:, t])
        outputs.append(o_t)
    return torch.stack(outputs, 1), state


def gla_chunked(q, k, v, log_a, chunk: int, initial_state=None):
    """The same in chunks of `chunk` steps (the last may be shorter). Within a chunk, with c_t the cumulative
    log decay from the chunk's start through step t (per key channel):

        o_t = (q_t * exp(c_t)) . S_0  +  sum_{s <= t} sum_k q_tk k_sk exp(c_tk - c_sk) v_s
        S_Q = exp(c_Q) * S_0  +  sum_s (k_s * exp(c_Q - c_s)) v_s^T

    Every exponent is of a sum of log decays over steps that have happened, so it is <= 0: no chunk length or
    decay overflows (a factorised exp(c_t) exp(-c_s) would). Returns (o (b, L, H, V), the final state)."""
    b, L, H, K = q.shape
    state = q.new_zeros(b, H, K, v.shape[-1]) if initial_state is None else initial_state
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    outputs = []
    for start in range(0, L, chunk):
        steps = slice(start, start + chunk)
        q_c, k_c, v_c, cum = q[:, steps], k[:, steps], v[:, steps], log_a[:, steps].cumsum(1)
        n = q_c.shape[1]
        inter = torch.einsum("bthk,bhkv->bthv", q_c * cum.exp(), state)
        between = cum[:, :, None] - cum[:, None, :]  # (b, t, s, H, K): c_t - c_s
        decay = torch.where(causal[:n, :n, None, None], between, -torch.inf).exp()
        scores = torch.einsum("bthk,bshk,btshk->bhts", q_c, k_c, decay)
        outputs.append(inter + torch.einsum("bhts,bshv->bthv", scores, v_c))
        last = cum[:, -1]  # (b, H, K)
        state = last.exp()[..., None] * state + torch.einsum("bshk,bshv->bhkv", k_c * (last[:, None] - cum).exp(),
                                                             v_c)
    return torch.cat(outputs, 1), state
