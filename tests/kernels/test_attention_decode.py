"""The generated attention decoding step (codegen/templates/attention_decode.py.jinja) against the cached path's
own softmax (torch's SDPA over the filled slots), under Triton's interpreter on a CPU or compiled on a GPU."""

import pytest
import torch
import torch.nn.functional as F

from composer.kernels.attention.decode import attention_decode_triton
from composer.kernels.attention.decode_plan import decode_constants, decode_splits, fits

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def reference(q, key_cache, value_cache, filled):
    """Each row's query against its first filled slots, in fp32 (GQA: query head h reads kv head h // group)."""
    group = q.shape[1] // key_cache.shape[2]
    rows = []
    for row in range(q.shape[0]):
        keys, values = (t[row, :int(filled[row])].float().repeat_interleave(group, dim=1).transpose(0, 1)
                        for t in (key_cache, value_cache))  # (H, n, D)
        rows.append(F.scaled_dot_product_attention(q[row].float()[:, None], keys, values)[:, 0])
    return torch.stack(rows)


def case(b, heads, kv_heads, head_dim, slots, dtype, seed=0):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    q = torch.randn(b, heads, head_dim, device=DEVICE, generator=g).to(dtype)
    key_cache, value_cache = (torch.randn(b, slots, kv_heads, head_dim, device=DEVICE, generator=g).to(dtype)
                              for _ in range(2))
    return q, key_cache, value_cache


@pytest.mark.parametrize("heads, kv_heads, head_dim", [(4, 4, 16), (4, 2, 32), (8, 2, 16), (6, 1, 16)])
@pytest.mark.parametrize("splits", [1, 2, 3])
def test_matches_the_softmax_over_the_filled_slots(heads, kv_heads, head_dim, splits):
    """Rows filled to 1, 70 (past one 64-slot tile, not a multiple of it) and 150 of 150 slots (a ring buffer
    full); GQA groups of 1 to 6 (6 pads to 16 tile rows); one split (y written directly) or several, the last
    ones past a short row's filled slots."""
    q, key_cache, value_cache = case(3, heads, kv_heads, head_dim, 150, torch.float32)
    filled = torch.tensor([1, 70, 150], device=DEVICE)
    y = attention_decode_triton(decode_constants(head_dim, heads, kv_heads), q, key_cache, value_cache, filled,
                                splits=splits)
    assert y.shape == q.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, reference(q, key_cache, value_cache, filled), rtol=1e-5, atol=1e-5)


def test_bf16_caches(bf16_products):
    q, key_cache, value_cache = case(2, 8, 2, 32, 200, torch.bfloat16, seed=3)
    filled = torch.tensor([200, 37], device=DEVICE)
    y = attention_decode_triton(decode_constants(32, 8, 2), q, key_cache, value_cache, filled, splits=2)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference(q, key_cache, value_cache, filled), rtol=2e-2, atol=2e-2)


def test_the_plan_s_rules():
    assert decode_constants(64, 32, 8) == dict(D=64, HEADS=32, KV_HEADS=8, GROUP=4, GROUP_PAD=16, BLOCK_S=64,
                                               NUM_WARPS=4)
    assert fits(64) is None and "power of two" in fits(96) and "power of two" in fits(8)
    assert decode_splits(1, 8, 32768, None) == 1                 # the interpreter: one
    assert decode_splits(1, 8, 32768, 132) == 32                 # 8 x 32 programs: 2 a multiprocessor at most
    assert decode_splits(1, 8, 1024, 132) == 4                   # each split keeps 256 slots or more
    assert decode_splits(64, 8, 32768, 132) == 1                 # 512 programs fill the GPU already


def test_constants_that_do_not_fit_are_an_error():
    q, key_cache, value_cache = case(2, 4, 2, 16, 10, torch.float32)
    with pytest.raises(ValueError, match="do not fit"):
        attention_decode_triton(decode_constants(16, 4, 4), q, key_cache, value_cache, torch.tensor([1, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a 32k-slot cache takes minutes under the interpreter")
@pytest.mark.parametrize("batch", [1, 16])
def test_long_caches_split_on_the_gpu(batch):
    """The plan's own split count (32 at batch 1 with 8 kv heads) at a hybrid's attention sizes, in bf16."""
    q, key_cache, value_cache = case(batch, 32, 8, 128, 32768, torch.bfloat16, seed=5)
    filled = torch.randint(1, 32769, (batch,), device=DEVICE)
    y = attention_decode_triton(decode_constants(128, 32, 8), q, key_cache, value_cache, filled)
    torch.testing.assert_close(y.float(), reference(q, key_cache, value_cache, filled), rtol=2e-2, atol=2e-2)
