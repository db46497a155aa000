"""The four forms of the SSD reference agree: quadratic, chunked, recurrent, step."""

import pytest
import torch

from composer.kernels.semiseparable.reference import (
    segsum, ssd_chunked, ssd_quadratic, ssd_recurrent, ssd_step,
)

F64 = dict(rtol=1e-7, atol=1e-9)
F32 = dict(rtol=1e-5, atol=1e-5)


def make_inputs(b=2, L=37, H=4, P=8, G=2, N=4, dtype=torch.float64, decay=(0.0, 1.0)):
    """Random SSD inputs from the global generator; log_a uniform in -[decay[0], decay[1]]."""
    x = torch.randn(b, L, H, P, dtype=dtype)
    lo, hi = decay
    log_a = -(lo + (hi - lo) * torch.rand(b, L, H, dtype=dtype))
    B = torch.randn(b, L, G, N, dtype=dtype)
    C = torch.randn(b, L, G, N, dtype=dtype)
    h0 = torch.randn(b, H, P, N, dtype=dtype)
    return x, log_a, B, C, h0


SHAPES = [  # (L, chunk_len, P, G, N)
    (37, 8, 8, 1, 4),
    (64, 16, 16, 2, 16),
    (1, 8, 8, 2, 4),
    (13, 5, 16, 1, 16),
    (32, 32, 8, 4, 4),
]


@pytest.mark.parametrize("use_h0", [False, True])
@pytest.mark.parametrize("L,chunk_len,P,G,N", SHAPES)
def test_chunked_and_recurrent_match_quadratic(L, chunk_len, P, G, N, use_h0):
    torch.manual_seed(L + G)
    x, log_a, B, C, h0 = make_inputs(L=L, P=P, G=G, N=N)
    h0 = h0 if use_h0 else None
    y_ref, s_ref = ssd_quadratic(x, log_a, B, C, h0)
    for y, s in (ssd_chunked(x, log_a, B, C, chunk_len, h0), ssd_recurrent(x, log_a, B, C, h0)):
        torch.testing.assert_close(y, y_ref, **F64)
        torch.testing.assert_close(s, s_ref, **F64)


def test_quadratic_matches_explicit_sum():
    torch.manual_seed(1)
    x, log_a, B, C, h0 = make_inputs(b=1, L=6, H=2, P=3, G=1, N=2)
    y, s = ssd_quadratic(x, log_a, B, C, h0)
    cum = log_a.cumsum(1)
    for t in range(6):
        want = torch.exp(cum[:, t])[..., None] * torch.einsum("bhpn,bn->bhp", h0, C[:, t, 0])
        for r in range(t + 1):
            w = torch.exp(cum[:, t] - cum[:, r]) * (C[:, t, 0] * B[:, r, 0]).sum(-1)[:, None]
            want = want + w[..., None] * x[:, r]
        torch.testing.assert_close(y[:, t], want, **F64)
    want_s = torch.exp(cum[:, -1])[..., None, None] * h0
    for r in range(6):
        w = torch.exp(cum[:, -1] - cum[:, r])[..., None, None]
        want_s = want_s + w * torch.einsum("bhp,bn->bhpn", x[:, r], B[:, r, 0])
    torch.testing.assert_close(s, want_s, **F64)


def test_step_is_one_position_of_recurrence():
    torch.manual_seed(2)
    x, log_a, B, C, h0 = make_inputs(L=1)
    y, s = ssd_step(h0, x[:, 0], log_a[:, 0], B[:, 0], C[:, 0])
    y_ref, s_ref = ssd_quadratic(x, log_a, B, C, h0)
    torch.testing.assert_close(y, y_ref[:, 0], **F64)
    torch.testing.assert_close(s, s_ref, **F64)


@pytest.mark.parametrize("form", ["quadratic", "chunked", "recurrent"])
def test_split_sequence_passes_state(form):
    torch.manual_seed(3)
    x, log_a, B, C, h0 = make_inputs(L=29)
    run = {
        "quadratic": ssd_quadratic,
        "chunked": lambda *a: ssd_chunked(*a[:4], 8, a[4]),
        "recurrent": ssd_recurrent,
    }[form]
    y_all, s_all = run(x, log_a, B, C, h0)
    cut = 11
    y1, s1 = run(x[:, :cut], log_a[:, :cut], B[:, :cut], C[:, :cut], h0)
    y2, s2 = run(x[:, cut:], log_a[:, cut:], B[:, cut:], C[:, cut:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, **F64)
    torch.testing.assert_close(s2, s_all, **F64)


def test_segsum_is_stable_and_masked():
    log_a = torch.full((1, 2048), -50.0)
    out = segsum(log_a)
    assert torch.isneginf(out[0, 0, 1:]).all()
    assert torch.isfinite(out.tril()).all()
    assert torch.exp(out).isfinite().all()
    torch.testing.assert_close(out[0, 5, 2], torch.tensor(-150.0))
    torch.testing.assert_close(out[0, 2047, 0], torch.tensor(-50.0 * 2047))


@pytest.mark.parametrize("decay", [(49.0, 51.0), (0.0, 0.0), (0.0, 1e-3), (0.0, 50.0)])
def test_extreme_decays_long_sequence_finite_and_equal(decay):
    torch.manual_seed(4)
    x, log_a, B, C, h0 = make_inputs(b=1, L=2048, H=2, P=8, G=1, N=4, dtype=torch.float32,
                                     decay=decay)
    B, C = B * 0.1, C * 0.1  # keep no-decay sums of 2048 terms moderate in fp32
    y_q, s_q = ssd_quadratic(x, log_a, B, C, h0)
    for y, s in (ssd_chunked(x, log_a, B, C, 64, h0), ssd_recurrent(x, log_a, B, C, h0)):
        assert torch.isfinite(y).all() and torch.isfinite(s).all()
        torch.testing.assert_close(y, y_q, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s, s_q, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(y_q).all() and torch.isfinite(s_q).all()


def test_extreme_decays_recurrent_matches():
    torch.manual_seed(5)
    x, log_a, B, C, h0 = make_inputs(b=1, L=300, H=2, P=8, G=1, N=4, dtype=torch.float32)
    log_a[:, ::3] = -50.0
    log_a[:, 1::3] = 0.0
    y_q, s_q = ssd_quadratic(x, log_a, B, C, h0)
    y_r, s_r = ssd_recurrent(x, log_a, B, C, h0)
    torch.testing.assert_close(y_r, y_q, **F32)
    torch.testing.assert_close(s_r, s_q, **F32)


def test_chunked_gradcheck():
    torch.manual_seed(6)
    x, log_a, B, C, h0 = make_inputs(b=1, L=5, H=2, P=2, G=1, N=2)
    inputs = [t.clone().requires_grad_() for t in (x, log_a, B, C, h0)]
    assert torch.autograd.gradcheck(lambda *a: ssd_chunked(*a[:4], 2, a[4]), inputs)


def test_chunked_gradients_match_quadratic_and_are_finite():
    torch.manual_seed(7)
    x, log_a, B, C, h0 = make_inputs(L=37)
    log_a[:, :5] = -50.0
    grads = []
    for run in (ssd_quadratic, lambda *a: ssd_chunked(*a[:4], 8, a[4])):
        inputs = [t.clone().requires_grad_() for t in (x, log_a, B, C, h0)]
        y, s = run(*inputs)
        (y.square().sum() + s.square().sum()).backward()
        grads.append([t.grad for t in inputs])
    for g_q, g_c in zip(*grads):
        assert torch.isfinite(g_c).all()
        torch.testing.assert_close(g_c, g_q, **F64)
