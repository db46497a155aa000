"""The linear-attention reference: feature maps, and quadratic == chunked == recurrent."""

import math

import pytest
import torch

from composer.kernels.lowrank.reference import (
    FEATURE_MAPS, feature_dim_out, feature_map, linear_attention_chunked,
    linear_attention_quadratic, linear_attention_recurrent, linear_attention_step,
)

F64 = dict(rtol=1e-7, atol=1e-9)


def make_inputs(b=2, L=37, H=4, d=4, P=8, kind="elu", decay=False, dtype=torch.float64):
    """Feature-mapped q, k (b, L, H, F), v (b, L, H, P) and log_a (b, L, H) or None."""
    q = feature_map(torch.randn(b, L, H, d, dtype=dtype), kind)
    k = feature_map(torch.randn(b, L, H, d, dtype=dtype), kind)
    v = torch.randn(b, L, H, P, dtype=dtype)
    log_a = -torch.rand(b, L, H, dtype=dtype) if decay else None
    return q, k, v, log_a


def cases():
    for kind in FEATURE_MAPS:
        for normalize in (False, True):
            if kind == "identity" and normalize:
                continue  # the denominator can cross zero: no well-posed comparison
            for decay in (False, True):
                yield kind, normalize, decay


@pytest.mark.parametrize("L,chunk_len", [(37, 8), (64, 16), (1, 8)])
@pytest.mark.parametrize("kind,normalize,decay", list(cases()))
def test_causal_forms_agree(kind, normalize, decay, L, chunk_len):
    torch.manual_seed(L + 7 * normalize + 3 * decay)
    q, k, v, log_a = make_inputs(L=L, kind=kind, decay=decay, P=8 if L != 64 else 16)
    y_q = linear_attention_quadratic(q, k, v, causal=True, normalize=normalize, log_a=log_a)
    y_c, s_c = linear_attention_chunked(q, k, v, chunk_len, normalize=normalize, log_a=log_a)
    y_r, s_r = linear_attention_recurrent(q, k, v, normalize=normalize, log_a=log_a)
    torch.testing.assert_close(y_c, y_q, **F64)
    torch.testing.assert_close(y_r, y_q, **F64)
    if normalize:
        assert isinstance(s_c, tuple) and len(s_c) == 2
        torch.testing.assert_close(s_c[0], s_r[0], **F64)
        torch.testing.assert_close(s_c[1], s_r[1], **F64)
        assert s_c[0].shape == (2, 4, v.shape[-1], q.shape[-1]) and s_c[1].shape == (2, 4, q.shape[-1])
    else:
        torch.testing.assert_close(s_c, s_r, **F64)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("kind", ["elu", "taylor", "softmax"])
def test_noncausal_chunked_matches_quadratic(kind, normalize):
    torch.manual_seed(21)
    q, k, v, _ = make_inputs(L=37, kind=kind)
    y_q = linear_attention_quadratic(q, k, v, causal=False, normalize=normalize)
    y_c, _ = linear_attention_chunked(q, k, v, 8, causal=False, normalize=normalize)
    torch.testing.assert_close(y_c, y_q, **F64)


def test_noncausal_with_decay_is_an_error():
    q, k, v, log_a = make_inputs(L=5, decay=True)
    with pytest.raises(ValueError):
        linear_attention_quadratic(q, k, v, causal=False, log_a=log_a)
    with pytest.raises(ValueError):
        linear_attention_chunked(q, k, v, 4, causal=False, log_a=log_a)


def test_quadratic_matches_explicit_sum():
    torch.manual_seed(22)
    q, k, v, log_a = make_inputs(b=1, L=6, H=1, kind="elu", decay=True)
    y = linear_attention_quadratic(q, k, v, log_a=log_a, eps=1e-6)
    for t in range(6):
        w = torch.stack([(q[0, t, 0] @ k[0, s, 0]) * torch.exp(log_a[0, s + 1:t + 1, 0].sum())
                         for s in range(t + 1)])
        want = (w[:, None] * v[0, :t + 1, 0]).sum(0) / (w.sum() + 1e-6)
        torch.testing.assert_close(y[0, t, 0], want, **F64)


@pytest.mark.parametrize("normalize", [False, True])
def test_split_sequence_passes_state(normalize):
    torch.manual_seed(23)
    q, k, v, log_a = make_inputs(L=29, kind="taylor", decay=True)
    y_all, s_all = linear_attention_chunked(q, k, v, 8, normalize=normalize, log_a=log_a)
    cut = 13
    y1, s1 = linear_attention_chunked(q[:, :cut], k[:, :cut], v[:, :cut], 8, normalize=normalize,
                                      log_a=log_a[:, :cut])
    y2, s2 = linear_attention_recurrent(q[:, cut:], k[:, cut:], v[:, cut:], normalize=normalize,
                                        log_a=log_a[:, cut:], initial_state=s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, **F64)
    pairs = zip(s2, s_all) if normalize else [(s2, s_all)]  # (S, z) tuples, or S alone
    for got, want in pairs:
        torch.testing.assert_close(got, want, **F64)


def test_step_without_decay_accumulates():
    torch.manual_seed(24)
    q, k, v, _ = make_inputs(L=1)
    S0, z0 = torch.randn(2, 4, 8, 4, dtype=q.dtype), torch.rand(2, 4, 4, dtype=q.dtype)
    y, (S, z) = linear_attention_step((S0, z0), q[:, 0], k[:, 0], v[:, 0])
    torch.testing.assert_close(S, S0 + torch.einsum("bhp,bhf->bhpf", v[:, 0], k[:, 0]), **F64)
    torch.testing.assert_close(z, z0 + k[:, 0], **F64)
    want = torch.einsum("bhpf,bhf->bhp", S, q[:, 0]) / (torch.einsum("bhf,bhf->bh", z, q[:, 0])
                                                        [..., None] + 1e-6)
    torch.testing.assert_close(y, want, **F64)


@pytest.mark.parametrize("kind", FEATURE_MAPS)
@pytest.mark.parametrize("d", [1, 4, 16])
def test_feature_dim_out_matches_actual(kind, d):
    out = feature_map(torch.randn(2, 3, d), kind)
    assert out.shape == (2, 3, feature_dim_out(kind, d))


def test_taylor_map_is_second_order_exp():
    torch.manual_seed(25)
    d = 16
    q, k = torch.randn(5, d, dtype=torch.float64), torch.randn(5, d, dtype=torch.float64)
    dot = (q * k).sum(-1) / math.sqrt(d)
    got = (feature_map(q, "taylor") * feature_map(k, "taylor")).sum(-1)
    torch.testing.assert_close(got, 1 + dot + dot ** 2 / 2, **F64)


def test_unknown_feature_map_is_an_error():
    with pytest.raises(ValueError):
        feature_map(torch.randn(3), "cosine")
    with pytest.raises(ValueError):
        feature_dim_out("cosine", 3)
