"""The softmax-attention reference: explicit == SDPA, decoding step == last row, rotary properties."""

import pytest
import torch

from composer.kernels.attention.reference import (
    apply_rope, attention_mask, attention_quadratic, attention_sdpa, attention_step, rope_frequencies,
)

F64 = dict(rtol=1e-7, atol=1e-9)


def make_qkv(b=2, L=37, S=None, Hq=4, Hkv=4, D=16, dtype=torch.float64):
    S = L if S is None else S
    return (torch.randn(b, L, Hq, D, dtype=dtype), torch.randn(b, S, Hkv, D, dtype=dtype),
            torch.randn(b, S, Hkv, D, dtype=dtype))


@pytest.mark.parametrize("causal,window", [(True, None), (True, 1), (True, 5), (False, None),
                                           (False, 4), (True, 100)])
@pytest.mark.parametrize("L,S,Hkv,D", [(37, 37, 4, 16), (64, 64, 2, 8), (1, 1, 1, 8),
                                       (8, 20, 2, 16), (1, 13, 4, 8)])
def test_quadratic_matches_sdpa(causal, window, L, S, Hkv, D):
    torch.manual_seed(L + S + Hkv)
    q, k, v = make_qkv(L=L, S=S, Hkv=Hkv, D=D)
    y_q = attention_quadratic(q, k, v, causal=causal, window=window)
    y_s = attention_sdpa(q, k, v, causal=causal, window=window)
    torch.testing.assert_close(y_s, y_q, **F64)


def test_quadratic_matches_explicit_gqa_loop():
    torch.manual_seed(31)
    q, k, v = make_qkv(b=1, L=9, Hq=4, Hkv=2, D=8)
    y = attention_quadratic(q, k, v, causal=True, window=3, scale=0.3)
    for t in range(9):
        for h in range(4):
            keys = range(max(0, t - 2), t + 1)  # t - 3 < s <= t
            scores = torch.stack([q[0, t, h] @ k[0, s, h // 2] * 0.3 for s in keys])
            want = (torch.softmax(scores, 0)[:, None] * v[0, list(keys), h // 2]).sum(0)
            torch.testing.assert_close(y[0, t, h], want, **F64)


def test_mask_conventions():
    m = attention_mask(4, 6, causal=True, window=2)  # queries at positions 2..5
    assert m.tolist() == [[False, True, True, False, False, False],
                          [False, False, True, True, False, False],
                          [False, False, False, True, True, False],
                          [False, False, False, False, True, True]]
    assert attention_mask(3, 3, causal=False, window=2).tolist() == [
        [True, True, False], [True, True, True], [False, True, True]]
    with pytest.raises(ValueError):
        attention_mask(5, 3, causal=True)
    with pytest.raises(ValueError):
        attention_mask(3, 3, window=0)


@pytest.mark.parametrize("window", [None, 1, 4])
@pytest.mark.parametrize("Hkv", [1, 2, 4])
def test_step_matches_last_row_of_quadratic(window, Hkv):
    torch.manual_seed(32 + Hkv)
    q, k, v = make_qkv(L=11, Hkv=Hkv)
    y = attention_quadratic(q, k, v, causal=True, window=window)
    for t in (0, 5, 10):
        y_t = attention_step(q[:, t], k[:, :t + 1], v[:, :t + 1], window=window)
        torch.testing.assert_close(y_t, y[:, t], **F64)


def test_gqa_heads_share_kv():
    torch.manual_seed(33)
    q, k, v = make_qkv(L=6, Hq=4, Hkv=2)
    q[:, :, 1] = q[:, :, 0]  # heads 0 and 1 read kv head 0; head 2 reads kv head 1
    q[:, :, 2] = q[:, :, 0]
    y = attention_quadratic(q, k, v)
    torch.testing.assert_close(y[:, :, 1], y[:, :, 0], **F64)
    assert not torch.allclose(y[:, :, 2], y[:, :, 0])
    with pytest.raises(ValueError):
        attention_quadratic(q, k[:, :, :1].expand(-1, -1, 3, -1), v[:, :, :1].expand(-1, -1, 3, -1))


def test_rope_preserves_norms():
    torch.manual_seed(34)
    cos, sin = rope_frequencies(16, 64, dtype=torch.float64)
    assert cos.shape == sin.shape == (64, 8)
    x = torch.randn(2, 40, 4, 16, dtype=torch.float64)
    for offset in (0, 24):
        torch.testing.assert_close(apply_rope(x, cos, sin, offset).norm(dim=-1), x.norm(dim=-1), **F64)
    torch.testing.assert_close(apply_rope(x, cos, sin)[:, 0], x[:, 0], **F64)  # angle 0 at position 0


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(35)
    cos, sin = rope_frequencies(16, 128, dtype=torch.float64)
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)

    def score(i, j):
        return (apply_rope(q, cos, sin, offset=i) * apply_rope(k, cos, sin, offset=j)).sum()

    for gap in (0, 3, 17):
        torch.testing.assert_close(score(gap, 0), score(gap + 50, 50), **F64)
        torch.testing.assert_close(score(5, 5 + gap), score(90, 90 + gap), **F64)
    assert not torch.allclose(score(3, 0), score(4, 0))


def test_rope_offset_equals_slice_of_longer_sequence():
    torch.manual_seed(36)
    cos, sin = rope_frequencies(8, 32)
    x = torch.randn(2, 20, 3, 8)
    torch.testing.assert_close(apply_rope(x[:, 7:], cos, sin, offset=7), apply_rope(x, cos, sin)[:, 7:])
