"""GLA's reference forms agree: the chunked form and the step against the recurrence (the definition), with
odd lengths, lengths not a multiple of the chunk, key dim != value dim, an initial state and decays strong
enough that a factorised exp(c_t) exp(-c_s) would overflow; and gradients flow through the chunked form."""

import pytest
import torch

from composer.kernels.gla.reference import gla_chunked, gla_recurrent, gla_step


def inputs(b, L, H, K, V, strength=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)
    log_a = -strength * torch.rand(b, L, H, K, generator=generator, dtype=torch.float64)
    return randn(b, L, H, K), randn(b, L, H, K), randn(b, L, H, V), log_a, randn(b, H, K, V)


@pytest.mark.parametrize("b,L,H,K,V,chunk", [(2, 37, 3, 8, 16, 16), (1, 16, 2, 16, 8, 16), (3, 5, 1, 4, 4, 4),
                                             (1, 70, 2, 8, 8, 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_equals_the_recurrence(b, L, H, K, V, chunk, with_state):
    q, k, v, log_a, h0 = inputs(b, L, H, K, V, seed=L + chunk)
    initial = h0 if with_state else None
    want_o, want_state = gla_recurrent(q, k, v, log_a, initial)
    got_o, got_state = gla_chunked(q, k, v, log_a, chunk, initial)
    torch.testing.assert_close(got_o, want_o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_state, want_state, rtol=1e-10, atol=1e-10)


def test_strong_decays_stay_finite_in_fp32():
    """Log decays of -30 a step sum to -1920 over a 64-step chunk: exp(1920) is inf in any float type."""
    q, k, v, log_a, _ = (t.float() for t in inputs(1, 128, 2, 8, 8, strength=60.0))
    got, state = gla_chunked(q, k, v, log_a, 64)
    want, want_state = gla_recurrent(q.double(), k.double(), v.double(), log_a.double())
    assert torch.isfinite(got).all() and torch.isfinite(state).all()
    for g, w in ((got, want), (state, want_state)):  # fp32 against the fp64 recurrence, 1e-5 in norm
        assert (g.double() - w).norm() / w.norm() < 1e-5


def test_chunked_in_pieces_continues_the_state():
    q, k, v, log_a, _ = inputs(2, 45, 2, 8, 4)
    whole, whole_state = gla_chunked(q, k, v, log_a, 16)
    first, state = gla_chunked(q[:, :20], k[:, :20], v[:, :20], log_a[:, :20], 16)
    second, state = gla_chunked(q[:, 20:], k[:, 20:], v[:, 20:], log_a[:, 20:], 16, state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, whole_state, rtol=1e-10, atol=1e-10)


def test_step_is_one_token_of_the_recurrence():
    q, k, v, log_a, h0 = inputs(2, 1, 3, 8, 16)
    want, want_state = gla_recurrent(q, k, v, log_a, h0)
    got, state = gla_step(h0, q[:, 0], k[:, 0], v[:, 0], log_a[:, 0])
    torch.testing.assert_close(got, want[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state, want_state, rtol=1e-12, atol=1e-12)


def test_gradients_of_the_chunked_form_equal_the_recurrence():
    leaves = [t.requires_grad_() for t in inputs(1, 21, 2, 4, 8, seed=3)]
    o, state = gla_chunked(*leaves[:4], 8, leaves[4])
    grads = torch.autograd.grad((o.square().sum() + state.sum()), leaves)
    o_ref, state_ref = gla_recurrent(*leaves[:4], leaves[4])
    want = torch.autograd.grad((o_ref.square().sum() + state_ref.sum()), leaves)
    for name, g, w in zip(("q", "k", "v", "log_a", "initial_state"), grads, want):
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=lambda m: f"d{name}: {m}")
