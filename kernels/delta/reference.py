"""Plain-PyTorch reference of the delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet).

    S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T        y_t = S_t^T (scale q_t)

with a_t = exp(log_gate_t) (no gate: a_t = 1). Written with the error of the state's own prediction,
the same update reads S_t = a_t S_{t-1} + beta_t k_t (v_t - a_t S_{t-1}^T k_t)^T: each token writes the
part of v_t that the decayed state does not already give for key k_t.

Notation: b batch, L length, H value heads, Hk key heads (H a multiple of Hk: value head h reads key head
h // (H / Hk)), K key dim, V value dim, Q chunk length.
    q, k (b, L, Hk, K); v (b, L, H, V); beta (b, L, H); log_gate (b, L, H) <= 0 or None.
State: S (b, H, K, V), fp32.

The chunked form is the WY/UT representation (Yang et al., 2024; Gated DeltaNet, Yang et al., 2025). In a
chunk with cumulative log gates G_i (from the chunk's start) and the state S0 at its start, every state is
S_i = e^{G_i} S0 + sum_{j<=i} e^{G_i - G_j} k_j U_j^T, where the rows U_j (the written values) solve
    (I + A) U = diag(beta) V - diag(beta e^G) K S0,    A_ij = beta_i e^{G_i - G_j} k_i.k_j for j < i,
so with T = (I + A)^-1 (unit lower triangular): U = u - w S0, u = T diag(beta) V, w = T diag(beta e^G) K.
Then  Y = diag(e^G) (scale Q) S0 + (scale Q K^T o D) U  (D_ij = e^{G_i - G_j} for j <= i, else 0)
and   S_Q = e^{G_Q} S0 + (diag(e^{G_Q - G}) K)^T U.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_value_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Keys or queries (b, L, Hk, K) -> (b, L, H, K): each key head serves H / Hk consecutive value heads."""
    return x if x.shape[2] == heads else x.repeat_interleave(heads // x.shape[2], dim=2)


def delta_rule_step(state, q, k, v, beta, log_gate=None, scale: float | None = None):
    """One token: state (b, H, K, V); q, k (b, Hk, K); v (b, H, V); beta, log_gate (b, H).
    Returns (y (b, H, V), the new state), fp32."""
    heads = v.shape[1]
    q, k = (_per_value_head(t[:, None], heads)[:, 0].float() for t in (q, k))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    state = state.float()
    if log_gate is not None:
        state = state * torch.exp(log_gate.float())[..., None, None]
    written = (v.float() - torch.einsum("bhkv,bhk->bhv", state, k)) * beta.float()[..., None]
    state = state + torch.einsum("bhk,bhv->bhkv", k, written)
    return torch.einsum("bhkv,bhk->bhv", state, q * scale), state


def delta_rule_recurrent(q, k, v, beta, log_gate=None, scale: float | None = None, initial_state=None):
    """The definition, one token at a time. Returns (y (b, L, H, V), final state (b, H, K, V)), fp32."""
    b, L, H, V = v.shape
    state = q.new_zeros(b, H, q.shape[-1], V, dtype=torch.float32) if initial_state is None else initial_state
    ys = []
    for t in range(L):
        y, state = delta_rule_step(state, q[:, t], k[:, t], v[:, t], beta[:, t],
                                   None if log_gate is None else log_gate[:, t], scale)
        ys.append(y)
    return torch.stack(ys, dim=1), state.float()


def delta_rule_chunked(q, k, v, beta, log_gate=None, chunk: int = 64, scale: float | None = None,
                       initial_state=None):
    """The WY/UT chunked form (see the module's notes); any L (the tail chunk is padded with tokens that
    leave the state as it is: k = 0, beta = 0, log_gate = 0). Returns (y (b, L, H, V), final state), fp32."""
    b, L, H, V = v.shape
    K = q.shape[-1]
    scale = K ** -0.5 if scale is None else scale
    q, k = _per_value_head(q, H).float(), _per_value_head(k, H).float()
    log_gate = q.new_zeros(b, L, H) if log_gate is None else log_gate.float()
    pad = -L % chunk
    n = (L + pad) // chunk

    def chunks(x):  # (b, L, H, ...) -> (b, H, n, Q, ...)
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, 0, 0, pad))
        return x.reshape(b, n, chunk, H, *x.shape[3:]).transpose(1, 3).transpose(2, 3)

    q, k, v, beta, G = chunks(q * scale), chunks(k), chunks(v.float()), chunks(beta.float()), chunks(log_gate)
    G = G.cumsum(-1)                                                    # (b, H, n, Q)
    lower = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    D = torch.exp((G[..., :, None] - G[..., None, :]).masked_fill(~lower, -torch.inf))  # e^{G_i - G_j}, j <= i
    A = (beta[..., None] * D * (k @ k.transpose(-1, -2))).tril(-1)                      # strictly lower
    eye = torch.eye(chunk, device=q.device)
    T = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
    u = T @ (beta[..., None] * v)                                       # (b, H, n, Q, V)
    w = T @ ((beta * torch.exp(G))[..., None] * k)                      # (b, H, n, Q, K)
    state = q.new_zeros(b, H, K, V) if initial_state is None else initial_state.float()
    ys = []
    for c in range(n):
        U = u[:, :, c] - w[:, :, c] @ state
        Gc, kc, qc = G[:, :, c], k[:, :, c], q[:, :, c]
        ys.append((qc * torch.exp(Gc)[..., None]) @ state + ((qc @ kc.transpose(-1, -2)) * D[:, :, c]) @ U)
        last = Gc[..., -1:]
        state = torch.exp(last)[..., None] * state + (kc * torch.exp(last - Gc)[..., None]).transpose(-1, -2) @ U
    y = torch.stack(ys, dim=2).reshape(b, H, n * chunk, V).transpose(1, 2)
    return y[:, :L], state
