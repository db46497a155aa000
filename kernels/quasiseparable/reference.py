"""Plain-PyTorch reference of the Hydra quasiseparable mixer (Hwang et al., 2024).

    QS(X) = shift(SS_fw(X)) + flip(shift(SS_bw(flip(X)))) + D * X

SS is the semiseparable (SSD) core of `kernels/semiseparable/reference.py`; each half has its
own log_a, B, C. shift moves outputs one step later along L and fills zero at t = 0, so neither half
reaches the diagonal; flip reverses L. As in Hydra's code, every input is given in the original time
order and the backward half flips x, log_a_bw, B_bw and C_bw itself.

Notation: b batch, L length, H heads, P head dim, G groups, N state size.
    x (b, L, H, P); log_a_* (b, L, H) with log_a <= 0; B_*, C_* (b, L, G, N);
    D a per-head scalar, already combined by the caller: shape (H,) or (b, L, H) (anything that
    broadcasts to (b, L, H)); it multiplies x as D[..., None].

The matrix this makes, per head (cumsums taken over the half's own log_a):
    t > s:  M[t, s] = (C_fw[t-1] . B_fw[s]) exp(sum_{s < r <= t-1} log_a_fw[r])
    t = s:  M[t, t] = D[t]
    t < s:  M[t, s] = (C_bw[t+1] . B_bw[s]) exp(sum_{t+1 <= r < s} log_a_bw[r])
"""

import torch

from composer.kernels.semiseparable.reference import ssd_chunked, ssd_matrix


def shift(y: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Move y one step later along `dim`, with zero at position 0 (the last step falls off)."""
    first = torch.zeros_like(y.narrow(dim, 0, 1))
    return torch.cat([first, y.narrow(dim, 0, y.shape[dim] - 1)], dim=dim)


def _per_head(D: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """D broadcast to (b, L, H)."""
    b, L, H, _ = x.shape
    return torch.as_tensor(D, dtype=x.dtype, device=x.device).expand(b, L, H)


def qs_matrix(log_a_fw, B_fw, C_fw, log_a_bw, B_bw, C_bw, D, x_like):
    """The full quasiseparable matrix M (b, H, L, L), so that y[:, t, h] = sum_s M[:, h, t, s] x[:, s, h].

    x_like is any tensor of x's shape (b, L, H, P), used for D's broadcast, dtype and device.
    """
    lower = shift(ssd_matrix(log_a_fw, B_fw, C_fw), dim=-2)  # rows one step later: strictly lower
    upper = ssd_matrix(log_a_bw.flip(1), B_bw.flip(1), C_bw.flip(1))  # in flipped time
    upper = shift(upper, dim=-2).flip(-2, -1)  # flip(shift(M' flip(x))) is J S M' J: strictly upper
    diag = torch.diag_embed(_per_head(D, x_like).transpose(1, 2))  # (b, H, L, L)
    return lower + upper + diag


def qs_quadratic(x, log_a_fw, B_fw, C_fw, log_a_bw, B_bw, C_bw, D):
    """Quadratic form: materialise the (b, H, L, L) matrix and multiply. Returns y (b, L, H, P)."""
    M = qs_matrix(log_a_fw, B_fw, C_fw, log_a_bw, B_bw, C_bw, D, x)
    return torch.einsum("bhts,bshp->bthp", M, x)


def qs_chunked(x, log_a_fw, B_fw, C_fw, log_a_bw, B_bw, C_bw, D, chunk_len):
    """Two chunked SSD scans (the second on flipped inputs), shifted and summed, plus D x.
    Shapes as in the module docstring; returns y (b, L, H, P)."""
    y_fw, _ = ssd_chunked(x, log_a_fw, B_fw, C_fw, chunk_len)
    y_bw, _ = ssd_chunked(x.flip(1), log_a_bw.flip(1), B_bw.flip(1), C_bw.flip(1), chunk_len)
    return shift(y_fw) + shift(y_bw).flip(1) + _per_head(D, x)[..., None] * x
