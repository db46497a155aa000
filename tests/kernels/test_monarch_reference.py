"""The Monarch reference: the block form equals the dense matrix, the permutation convention holds,
and the causal variant only reads the past."""

import pytest
import torch

from composer.kernels.monarch.reference import (
    monarch_causal, monarch_dense, monarch_multiply, monarch_permutation,
)

F64 = dict(rtol=1e-7, atol=1e-9)
SIZES = [(2, 3), (4, 4), (3, 5), (1, 6), (8, 8)]


def make_blocks(m1, m2, channels=None, dtype=torch.float64):
    lead = () if channels is None else (channels,)
    return torch.randn(*lead, m2, m1, m1, dtype=dtype), torch.randn(*lead, m1, m2, m2, dtype=dtype)


@pytest.mark.parametrize("m1,m2", SIZES)
def test_multiply_matches_dense_shared(m1, m2):
    torch.manual_seed(m1 * 10 + m2)
    L_blocks, R_blocks = make_blocks(m1, m2)
    x = torch.randn(2, m1 * m2, 5, dtype=torch.float64)
    M = monarch_dense(L_blocks, R_blocks)
    assert M.shape == (m1 * m2, m1 * m2)
    torch.testing.assert_close(monarch_multiply(x, L_blocks, R_blocks),
                               torch.einsum("ts,bsz->btz", M, x), **F64)


@pytest.mark.parametrize("m1,m2", SIZES)
def test_multiply_matches_dense_per_channel(m1, m2):
    torch.manual_seed(m1 * 10 + m2 + 1)
    L_blocks, R_blocks = make_blocks(m1, m2, channels=3)
    x = torch.randn(2, m1 * m2, 3, dtype=torch.float64)
    M = monarch_dense(L_blocks, R_blocks)
    assert M.shape == (3, m1 * m2, m1 * m2)
    y = monarch_multiply(x, L_blocks, R_blocks)
    for c in range(3):
        torch.testing.assert_close(y[..., c], x[..., c] @ M[c].T, **F64)


def test_identity_blocks_give_identity():
    m1, m2 = 3, 4
    eye_L = torch.eye(m1, dtype=torch.float64).expand(m2, m1, m1)
    eye_R = torch.eye(m2, dtype=torch.float64).expand(m1, m2, m2)
    torch.testing.assert_close(monarch_dense(eye_L, eye_R), torch.eye(12, dtype=torch.float64))


def test_identity_L_leaves_block_diagonal_R():
    torch.manual_seed(41)
    m1, m2 = 3, 4
    _, R_blocks = make_blocks(m1, m2)
    eye_L = torch.eye(m1, dtype=torch.float64).expand(m2, m1, m1)
    torch.testing.assert_close(monarch_dense(eye_L, R_blocks), torch.block_diag(*R_blocks))


def test_identity_R_gives_L_on_strided_positions():
    torch.manual_seed(42)
    m1, m2 = 3, 4
    L_blocks, _ = make_blocks(m1, m2)
    eye_R = torch.eye(m2, dtype=torch.float64).expand(m1, m2, m2)
    M = monarch_dense(L_blocks, eye_R)
    want = torch.zeros(12, 12, dtype=torch.float64)
    for j in range(m2):  # L block j mixes positions a * m2 + j
        for k in range(m1):
            for a in range(m1):
                want[k * m2 + j, a * m2 + j] = L_blocks[j, k, a]
    torch.testing.assert_close(M, want)
    x = torch.randn(1, 12, 2, dtype=torch.float64)
    torch.testing.assert_close(monarch_multiply(x, L_blocks, eye_R), torch.einsum("ts,bsz->btz", want, x))


def test_permutation_is_reshape_transpose():
    assert monarch_permutation(2, 3).tolist() == [0, 3, 1, 4, 2, 5]
    z = torch.arange(6.0)
    assert z[monarch_permutation(2, 3)].tolist() == z.reshape(2, 3).T.reshape(-1).tolist()


@pytest.mark.parametrize("channels", [None, 3])
@pytest.mark.parametrize("m1,m2", [(4, 4), (3, 5)])
def test_causal_is_tril_of_dense_and_reads_only_the_past(m1, m2, channels):
    torch.manual_seed(43 + m1)
    L_blocks, R_blocks = make_blocks(m1, m2, channels)
    n = m1 * m2
    x = torch.randn(2, n, 3, dtype=torch.float64)
    y = monarch_causal(x, L_blocks, R_blocks)
    M = torch.tril(monarch_dense(L_blocks, R_blocks))
    want = torch.einsum("ts,bsz->btz" if channels is None else "zts,bsz->btz", M, x)
    torch.testing.assert_close(y, want, **F64)
    t = n // 2
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
    y2 = monarch_causal(x2, L_blocks, R_blocks)
    torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=0)
    assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])


def test_mismatched_blocks_are_an_error():
    L_blocks, R_blocks = make_blocks(3, 4)
    with pytest.raises(ValueError):
        monarch_dense(L_blocks, R_blocks.transpose(0, 1)[:3, :3])
    with pytest.raises(ValueError):
        monarch_multiply(torch.randn(1, 10, 1, dtype=torch.float64), L_blocks, R_blocks)
