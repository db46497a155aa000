"""Plain-PyTorch reference of Monarch matrices acting on the sequence axis (Dao et al., 2022;
Monarch Mixer / M2, Fu et al., 2023).

Convention. n = m1 * m2 and a position i is read as the pair (a, j) with i = a * m2 + j
(row-major view (m1, m2)).

    M = P^T  L  P  R
    R  = blockdiag(R_blocks[0], ..., R_blocks[m1 - 1]): m1 blocks of m2 x m2; block a mixes the
         contiguous positions a * m2 .. a * m2 + m2 - 1:  (R x)[a*m2 + j] = sum_i R_blocks[a, j, i] x[a*m2 + i]
    P  = the reshape-transpose permutation (m1, m2) -> (m2, m1):  (P z)[j*m1 + a] = z[a*m2 + j]
    L  = blockdiag(L_blocks[0], ..., L_blocks[m2 - 1]): m2 blocks of m1 x m1
    P^T  the inverse permutation, back to the (m1, m2) order.

So L's block j mixes the strided positions {a * m2 + j : a}:
    y[k*m2 + j] = sum_a L_blocks[j, k, a] sum_i R_blocks[a, j, i] x[a*m2 + i].
With identity L blocks M = blockdiag(R); with identity R blocks M = P^T blockdiag(L) P.

Shapes: L_blocks (m2, m1, m1), R_blocks (m1, m2, m2): one Monarch shared by every channel; or with
a leading channel-group dim c, L_blocks (c, m2, m1, m1), R_blocks (c, m1, m2, m2): one Monarch per
channel. x (b, n, d) with shared blocks (any d), x (b, n, c) with per-channel blocks.
"""

import torch


def _sizes(L_blocks: torch.Tensor, R_blocks: torch.Tensor):
    """(m1, m2) from the block shapes, checking that they agree."""
    m1, m2 = R_blocks.shape[-3], R_blocks.shape[-1]
    if R_blocks.shape[-2] != m2 or L_blocks.shape[-3:] != (m2, m1, m1):
        raise ValueError(f"blocks disagree: L {tuple(L_blocks.shape)}, R {tuple(R_blocks.shape)};"
                         " expected L (..., m2, m1, m1) and R (..., m1, m2, m2)")
    if L_blocks.shape[:-3] != R_blocks.shape[:-3]:
        raise ValueError("L_blocks and R_blocks must share the leading channel dim")
    return m1, m2


def monarch_permutation(m1: int, m2: int) -> torch.Tensor:
    """Indices perm (n,) of P: (P z)[r] = z[perm[r]], i.e. perm[j*m1 + a] = a*m2 + j."""
    return torch.arange(m1 * m2).reshape(m1, m2).T.reshape(-1)


def _dense_one(L_blocks: torch.Tensor, R_blocks: torch.Tensor) -> torch.Tensor:
    """One Monarch matrix (n, n) as the product of its four factors."""
    m1, m2 = _sizes(L_blocks, R_blocks)
    eye = torch.eye(m1 * m2, dtype=R_blocks.dtype, device=R_blocks.device)
    P = eye[monarch_permutation(m1, m2).to(R_blocks.device)]
    return P.T @ torch.block_diag(*L_blocks) @ P @ torch.block_diag(*R_blocks)


def monarch_dense(L_blocks: torch.Tensor, R_blocks: torch.Tensor) -> torch.Tensor:
    """Materialise M = P^T L P R: (n, n), or (c, n, n) with a leading channel dim on the blocks."""
    _sizes(L_blocks, R_blocks)
    if R_blocks.dim() == 3:
        return _dense_one(L_blocks, R_blocks)
    return torch.stack([_dense_one(Lc, Rc) for Lc, Rc in zip(L_blocks, R_blocks)])


def monarch_multiply(x: torch.Tensor, L_blocks: torch.Tensor, R_blocks: torch.Tensor) -> torch.Tensor:
    """y = M x along dim 1, as two batched block-diagonal matmuls (never forming n x n).

    x (b, n, d) with shared blocks, or (b, n, c) with per-channel blocks. Returns y of x's shape.
    Letters: a the R block (m1), i, j inside it (m2), k inside an L block (m1), z channel.
    """
    m1, m2 = _sizes(L_blocks, R_blocks)
    b, n, z = x.shape
    if n != m1 * m2:
        raise ValueError(f"sequence length {n} != m1 * m2 = {m1 * m2}")
    xv = x.reshape(b, m1, m2, z)  # position a*m2 + i -> [a, i]
    if R_blocks.dim() == 3:  # shared across channels
        t = torch.einsum("aji,baiz->bajz", R_blocks, xv)  # R
        y = torch.einsum("jka,bajz->bkjz", L_blocks, t)  # P, L, P^T: L block j reads t[:, :, j]
    else:
        t = torch.einsum("zaji,baiz->bajz", R_blocks, xv)
        y = torch.einsum("zjka,bajz->bkjz", L_blocks, t)
    return y.reshape(b, n, z)  # [k, j] -> position k*m2 + j


def monarch_causal(x: torch.Tensor, L_blocks: torch.Tensor, R_blocks: torch.Tensor) -> torch.Tensor:
    """Causal Monarch, defined here as the lower-triangular part of the dense matrix applied to x:
    y_t = sum_{s <= t} M[t, s] x_s. Quadratic (materialises n x n): a reference only, not the
    structured form (M2's causal Monarch via polynomial evaluation/interpolation is not this).
    Shapes as `monarch_multiply`."""
    M = torch.tril(monarch_dense(L_blocks, R_blocks))
    if M.dim() == 2:
        return torch.einsum("ts,bsz->btz", M, x)
    return torch.einsum("zts,bsz->btz", M, x)
