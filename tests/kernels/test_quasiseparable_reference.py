"""The Hydra quasiseparable reference: quadratic == chunked, and the matrix has the stated structure."""

import pytest
import torch

from composer.kernels.quasiseparable.reference import qs_chunked, qs_matrix, qs_quadratic

F64 = dict(rtol=1e-7, atol=1e-9)


def make_inputs(b=2, L=37, H=4, P=8, G=2, N=4, per_position_D=True, dtype=torch.float64):
    """x and the two halves' (log_a, B, C), then D, from the global generator."""
    x = torch.randn(b, L, H, P, dtype=dtype)
    halves = []
    for _ in range(2):
        halves += [-torch.rand(b, L, H, dtype=dtype), torch.randn(b, L, G, N, dtype=dtype),
                   torch.randn(b, L, G, N, dtype=dtype)]
    D = torch.randn(b, L, H, dtype=dtype) if per_position_D else torch.randn(H, dtype=dtype)
    return x, halves, D


def explicit_matrix(log_a_fw, B_fw, C_fw, log_a_bw, B_bw, C_bw, D, b, L, H):
    """M[b, h, t, s] written entry by entry from the module docstring's formula (groups = 1)."""
    D = D.expand(b, L, H)
    M = torch.zeros(b, H, L, L, dtype=D.dtype)
    for t in range(L):
        for s in range(L):
            if t > s:
                dot = (C_fw[:, t - 1, 0] * B_fw[:, s, 0]).sum(-1)[:, None]
                M[:, :, t, s] = dot * torch.exp(log_a_fw[:, s + 1:t].sum(1))
            elif t < s:
                dot = (C_bw[:, t + 1, 0] * B_bw[:, s, 0]).sum(-1)[:, None]
                M[:, :, t, s] = dot * torch.exp(log_a_bw[:, t + 1:s].sum(1))
            else:
                M[:, :, t, t] = D[:, t]
    return M


@pytest.mark.parametrize("per_position_D", [True, False])
@pytest.mark.parametrize("L,chunk_len,P,G,N", [
    (37, 8, 8, 1, 4), (64, 16, 16, 2, 16), (1, 8, 8, 2, 4), (2, 8, 8, 1, 4), (13, 5, 16, 4, 16),
])
def test_chunked_matches_quadratic(L, chunk_len, P, G, N, per_position_D):
    torch.manual_seed(L * 10 + G)
    x, halves, D = make_inputs(L=L, P=P, G=G, N=N, per_position_D=per_position_D)
    y_q = qs_quadratic(x, *halves, D)
    y_c = qs_chunked(x, *halves, D, chunk_len)
    torch.testing.assert_close(y_c, y_q, **F64)


@pytest.mark.parametrize("per_position_D", [True, False])
def test_matrix_has_forward_below_backward_above_D_on_diagonal(per_position_D):
    torch.manual_seed(11)
    b, L, H = 2, 7, 3
    x, halves, D = make_inputs(b=b, L=L, H=H, P=L, G=1, N=3, per_position_D=per_position_D)
    want = explicit_matrix(*halves, D, b, L, H)
    M = qs_matrix(*halves, D, x)
    torch.testing.assert_close(M, want, **F64)
    torch.testing.assert_close(torch.diagonal(M, dim1=-2, dim2=-1), D.expand(b, L, H).transpose(1, 2))
    # Identity-like input (P = L, x[:, s, h, p] = [s == p]) reads the matrix out of both forms.
    eye = torch.eye(L, dtype=x.dtype)[None, :, None, :].expand(b, L, H, L)
    for y in (qs_quadratic(eye, *halves, D), qs_chunked(eye, *halves, D, 3)):
        torch.testing.assert_close(y.permute(0, 2, 1, 3), want, **F64)


def test_halves_only_reach_their_side():
    torch.manual_seed(12)
    x, halves, D = make_inputs(L=9, G=1)
    zero_bw = halves[:3] + [halves[3], torch.zeros_like(halves[4]), halves[5]]
    M = qs_matrix(*zero_bw, torch.zeros_like(D), x)
    assert (M.triu(0) == 0).all() and (M.tril(-1) != 0).any()
    zero_fw = [halves[0], torch.zeros_like(halves[1]), halves[2]] + halves[3:]
    M = qs_matrix(*zero_fw, torch.zeros_like(D), x)
    assert (M.tril(0) == 0).all() and (M.triu(1) != 0).any()
