"""Plain-PyTorch reference of linear attention (Katharopoulos et al., 2020), with Based's Taylor map.

    y_t = sum_s (q_t . k_s) decay(t, s) v_s  /  (sum_s (q_t . k_s) decay(t, s) + eps)   (normalize)

q and k are already feature-mapped (`feature_map`); s runs over s <= t when causal, over all s
otherwise. decay(t, s) = exp(sum_{s < r <= t} log_a_r) with an optional log_a (b, L, H) as in SSD
(RetNet's fixed decay is log_a constant per head); no decay means log_a = 0. Decay is causal only.

Notation: b batch, L length, H heads, F feature dim (after the map), P value head dim.
    q, k (b, L, H, F); v (b, L, H, P); log_a (b, L, H) with log_a <= 0.
State: S (b, H, P, F), S = sum_s decay * v_s (x) k_s; with normalize also the normaliser
z (b, H, F), z = sum_s decay * k_s, and the state is the tuple (S, z).

The normaliser assumes positive features (elu, relu, taylor, softmax); with "identity" the
denominator can cross zero, so use normalize=False there.
"""

import math

import torch

from composer.kernels.semiseparable.reference import segsum, ssd_chunked, ssd_step

FEATURE_MAPS = ("elu", "relu", "identity", "taylor", "softmax")


def feature_dim_out(kind: str, d: int) -> int:
    """Feature dim after `feature_map(x, kind)` for an input of last dim d; taylor gives 1 + d + d^2."""
    if kind not in FEATURE_MAPS:
        raise ValueError(f"unknown feature map {kind!r}; expected one of {FEATURE_MAPS}")
    return 1 + d + d * d if kind == "taylor" else d


def feature_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(..., d) -> (..., feature_dim_out(kind, d)).

    elu: elu(x) + 1.  relu: relu(x).  identity: x.  softmax: softmax over the last axis.
    taylor (Based): [1, x / d^(1/4), flatten(x (x) x) / (sqrt(2) sqrt(d))], so that
        taylor(q) . taylor(k) = 1 + q.k / sqrt(d) + (q.k)^2 / (2 d), the 2nd-order Taylor
        expansion of exp(q.k / sqrt(d)).
    """
    d = x.shape[-1]
    if kind == "elu":
        return torch.nn.functional.elu(x) + 1.0
    if kind == "relu":
        return torch.relu(x)
    if kind == "identity":
        return x
    if kind == "softmax":
        return torch.softmax(x, dim=-1)
    if kind == "taylor":
        second = (x[..., :, None] * x[..., None, :]).flatten(-2) / (math.sqrt(2.0) * math.sqrt(d))
        return torch.cat([torch.ones_like(x[..., :1]), x / math.sqrt(math.sqrt(d)), second], dim=-1)
    raise ValueError(f"unknown feature map {kind!r}; expected one of {FEATURE_MAPS}")


def linear_attention_quadratic(q, k, v, causal=True, normalize=True, log_a=None, eps=1e-6):
    """Quadratic form: scores (q_t . k_s) decay(t, s), masked when causal. Returns y (b, L, H, P)."""
    scores = torch.einsum("bthf,bshf->bhts", q, k)  # (b, H, L, L)
    if log_a is not None and not causal:
        raise ValueError("a decay (log_a) needs causal=True")
    if causal:
        if log_a is None:
            log_a = q.new_zeros(q.shape[:3])
        scores = scores * torch.exp(segsum(log_a.transpose(1, 2)))  # exp(-inf) = 0 above the diagonal
    y = torch.einsum("bhts,bshp->bthp", scores, v)
    if normalize:
        y = y / (scores.sum(dim=-1).transpose(1, 2)[..., None] + eps)
    return y


def _with_ones(v: torch.Tensor) -> torch.Tensor:
    """v (b, L, H, P) -> (b, L, H, P + 1): the extra channel of ones makes the scan also carry z."""
    return torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)


def _join_state(state, normalize):
    """(S, z) -> one (b, H, P + 1, F) state for the scan (z as its last row); S alone if not normalize."""
    return torch.cat([state[0], state[1][:, :, None]], dim=2) if normalize else state


def _split_state(state, normalize):
    return (state[:, :, :-1], state[:, :, -1]) if normalize else state


def linear_attention_chunked(q, k, v, chunk_len, causal=True, normalize=True, log_a=None,
                             eps=1e-6, initial_state=None):
    """Chunked form on `ssd_chunked` (x = v, B = k, C = q, one group per head).

    Returns y (b, L, H, P) and final_state: S (b, H, P, F), or the tuple (S, z) with z (b, H, F) when
    normalize; initial_state has the same form. The normaliser runs through the same scan as an
    extra value channel of ones. Non-causal: every query reads the state after the whole sequence.
    """
    if log_a is not None and not causal:
        raise ValueError("a decay (log_a) needs causal=True")
    if log_a is None:
        log_a = q.new_zeros(q.shape[:3])
    values = _with_ones(v) if normalize else v
    h0 = _join_state(initial_state, normalize) if initial_state is not None else None
    y, state = ssd_chunked(values, log_a, k, q, chunk_len, initial_state=h0)
    if not causal:
        y = torch.einsum("bhpf,bthf->bthp", state, q)
    if normalize:
        y = y[..., :-1] / (y[..., -1:] + eps)
    return y, _split_state(state, normalize)


def linear_attention_step(state, q_t, k_t, v_t, log_a_t=None, normalize=True, eps=1e-6):
    """One decoding step. q_t, k_t (b, H, F); v_t (b, H, P); log_a_t (b, H) or None;
    state S (b, H, P, F), or (S, z) when normalize. Returns y_t (b, H, P), new_state."""
    if log_a_t is None:
        log_a_t = q_t.new_zeros(q_t.shape[:2])
    values = torch.cat([v_t, torch.ones_like(v_t[..., :1])], dim=-1) if normalize else v_t
    y_t, new_state = ssd_step(_join_state(state, normalize), values, log_a_t, k_t, q_t)
    if normalize:
        y_t = y_t[..., :-1] / (y_t[..., -1:] + eps)
    return y_t, _split_state(new_state, normalize)


def linear_attention_recurrent(q, k, v, normalize=True, log_a=None, eps=1e-6, initial_state=None):
    """The causal recurrence, one `linear_attention_step` per position. Shapes as the chunked form."""
    b, L, H, F = q.shape
    state = initial_state
    if state is None:
        S = q.new_zeros(b, H, v.shape[-1], F)
        state = (S, q.new_zeros(b, H, F)) if normalize else S
    ys = []
    for t in range(L):
        log_a_t = log_a[:, t] if log_a is not None else None
        y_t, state = linear_attention_step(state, q[:, t], k[:, t], v[:, t], log_a_t, normalize, eps)
        ys.append(y_t)
    return torch.stack(ys, dim=1), state
