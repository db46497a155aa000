"""Plain-PyTorch reference of the Mamba-2 SSD core (Dao & Gu, 2024): scalar decay per head.

The definition of correct for the semiseparable Triton kernels. Four forms of one function:
quadratic (the L x L matrix), chunked (the SSD algorithm), one decoding step, and the recurrence.

Notation
    b  batch                 L  sequence length        H  heads          P  head dim
    G  groups of B and C (H % G == 0; head h reads group h // (H // G))     N  state size
    log_a (b, L, H)  log of the per-step decay a_t, so log_a <= 0
    cum_t = sum_{r <= t} log_a_r

    y_t         = sum_{s <= t} (C_t . B_s) exp(cum_t - cum_s) x_s  +  exp(cum_t) h0 C_t
    final_state = sum_s exp(cum_{L-1} - cum_s) x_s (x) B_s      +  exp(cum_{L-1}) h0

States are laid out (b, H, P, N). Every form works in the dtype of x; use fp32 or fp64.
"""

import torch
import torch.nn.functional as F


def expand_groups(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(b, L, G, N) or (b, G, N) -> one slice per head along dim -2 (head h reads group h // (H // G))."""
    n_groups = t.shape[-2]
    if n_heads % n_groups:
        raise ValueError(f"heads ({n_heads}) must be a multiple of groups ({n_groups})")
    return t.repeat_interleave(n_heads // n_groups, dim=-2)


def segsum(log_a: torch.Tensor) -> torch.Tensor:
    """Segment sums of log decays, stable: (..., T) -> (..., T, T).

    out[..., t, s] = sum_{s < r <= t} log_a[..., r] for s <= t, and -inf above the diagonal, so
    exp(out) is the causal decay matrix. Built as a masked cumsum (Mamba-2's `segsum`): entries are
    masked before summing and never formed as differences of two large cumsums, so exp(out) cannot
    overflow and long sequences with strong decay keep full precision.
    """
    T = log_a.shape[-1]
    x = log_a[..., :, None].expand(*log_a.shape, T)  # x[..., r, s] = log_a[r]
    strictly_lower = torch.ones(T, T, dtype=torch.bool, device=log_a.device).tril(-1)
    x = x.masked_fill(~strictly_lower, 0.0)
    out = torch.cumsum(x, dim=-2)  # out[t, s] = sum_{s < r <= t} log_a[r]
    lower = torch.ones(T, T, dtype=torch.bool, device=log_a.device).tril(0)
    return out.masked_fill(~lower, float("-inf"))


def ssd_matrix(log_a: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The semiseparable mixing matrix M (b, H, L, L): M[t, s] = (C_t . B_s) exp(cum_t - cum_s), s <= t.

    log_a (b, L, H); B, C (b, L, G, N).
    """
    n_heads = log_a.shape[-1]
    B, C = expand_groups(B, n_heads), expand_groups(C, n_heads)  # (b, L, H, N)
    decay = torch.exp(segsum(log_a.transpose(1, 2)))  # (b, H, L, L)
    return torch.einsum("bthn,bshn->bhts", C, B) * decay


def ssd_quadratic(x, log_a, B, C, initial_state=None):
    """Quadratic (matrix) form. x (b, L, H, P); log_a (b, L, H); B, C (b, L, G, N);
    initial_state (b, H, P, N) or None. Returns y (b, L, H, P), final_state (b, H, P, N)."""
    n_heads = x.shape[2]
    M = ssd_matrix(log_a, B, C)  # (b, H, L, L)
    y = torch.einsum("bhts,bshp->bthp", M, x)
    # Decay from each step s to the end: exp(sum_{s < r <= L-1} log_a_r), the last row of exp(segsum).
    Bh = expand_groups(B, n_heads)
    to_end = torch.exp(segsum(log_a.transpose(1, 2))[..., -1, :])  # (b, H, L)
    final_state = torch.einsum("bhs,bshp,bshn->bhpn", to_end, x, Bh)
    if initial_state is not None:
        Ch = expand_groups(C, n_heads)
        from_start = torch.exp(torch.cumsum(log_a, dim=1))  # (b, L, H): exp(cum_t)
        y = y + from_start[..., None] * torch.einsum("bhpn,bthn->bthp", initial_state, Ch)
        final_state = final_state + from_start[:, -1, :, None, None] * initial_state
    return y, final_state


def ssd_chunked(x, log_a, B, C, chunk_len, initial_state=None):
    """SSD chunked algorithm (Mamba-2, listing 1): intra-chunk quadratic, chunk states, inter-chunk
    state passing, output from states. Shapes as `ssd_quadratic`; L need not divide by chunk_len
    (padded at the end with log_a = 0, x = B = C = 0, which leaves y[:L] and the final state as is).

    Inside, Q = chunk_len and c = number of chunks.
    """
    b, L, H, P = x.shape
    pad = (-L) % chunk_len
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        log_a = F.pad(log_a, (0, 0, 0, pad))
    c = x.shape[1] // chunk_len
    x = x.reshape(b, c, chunk_len, H, P)
    B = expand_groups(B, H).reshape(b, c, chunk_len, H, -1)
    C = expand_groups(C, H).reshape(b, c, chunk_len, H, -1)
    A = log_a.reshape(b, c, chunk_len, H).permute(0, 3, 1, 2)  # (b, H, c, Q)

    # 1. Intra-chunk (diagonal blocks): the quadratic form inside each chunk.
    decay = torch.exp(segsum(A))  # (b, H, c, Q, Q)
    y_diag = torch.einsum("bcthn,bcshn,bhcts,bcshp->bcthp", C, B, decay, x)

    # 2. State of each chunk from its own inputs: decay from step s to the chunk's end.
    to_chunk_end = decay[..., -1, :]  # (b, H, c, Q)
    states = torch.einsum("bcshn,bhcs,bcshp->bchpn", B, to_chunk_end, x)

    # 3. Inter-chunk recurrence over chunk boundaries (a quadratic form over c + 1 states).
    if initial_state is None:
        initial_state = x.new_zeros(b, H, P, B.shape[-1])
    states = torch.cat([initial_state[:, None], states], dim=1)  # (b, c + 1, H, P, N)
    chunk_log_a = F.pad(A.sum(dim=-1), (1, 0))  # (b, H, c + 1)
    decay_chunk = torch.exp(segsum(chunk_log_a))  # (b, H, c + 1, c + 1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = states[:, :-1], states[:, -1]  # state entering each chunk; the last one

    # 4. Contribution of the state entering each chunk: decay from the chunk start to step t.
    from_chunk_start = torch.exp(torch.cumsum(A, dim=-1))  # (b, H, c, Q)
    y_off = torch.einsum("bcthn,bchpn,bhct->bcthp", C, states, from_chunk_start)

    y = (y_diag + y_off).reshape(b, c * chunk_len, H, P)[:, :L]
    return y, final_state


def ssd_step(state, x_t, log_a_t, B_t, C_t):
    """One decoding step. state (b, H, P, N); x_t (b, H, P); log_a_t (b, H); B_t, C_t (b, G, N).

    new_state = exp(log_a_t) state + x_t (x) B_t;  y_t = new_state C_t.  Returns y_t (b, H, P), new_state.
    """
    n_heads = x_t.shape[1]
    B_t, C_t = expand_groups(B_t, n_heads), expand_groups(C_t, n_heads)  # (b, H, N)
    new_state = torch.exp(log_a_t)[..., None, None] * state + torch.einsum("bhp,bhn->bhpn", x_t, B_t)
    y_t = torch.einsum("bhpn,bhn->bhp", new_state, C_t)
    return y_t, new_state


def ssd_recurrent(x, log_a, B, C, initial_state=None):
    """The recurrence, one `ssd_step` per position. Shapes as `ssd_quadratic`."""
    b, L, H, P = x.shape
    state = initial_state if initial_state is not None else x.new_zeros(b, H, P, B.shape[-1])
    ys = []
    for t in range(L):
        y_t, state = ssd_step(state, x[:, t], log_a[:, t], B[:, t], C[:, t])
        ys.append(y_t)
    return torch.stack(ys, dim=1), state
