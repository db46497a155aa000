"""The generated attention decoding step (codegen/templates/attention_decode.py.jinja): one query a row and head
over the layer's KV cache, split across the cache where the batch is too small to fill the GPU."""

from __future__ import annotations

import torch
import triton

from composer.codegen.render import load_kernel_once
from composer.kernels.attention.decode_plan import DECODE_TEMPLATE, decode_splits
from composer.kernels.device import multiprocessors

HEADER = {"family": "attention", "rendered_for": "the attention decoding-step launcher"}


def attention_decode_triton(constants: dict, q: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                            filled: torch.Tensor, scale: float | None = None, splits: int | None = None) -> torch.Tensor:
    """Softmax attention of q (b, H, D), one query a row and head, over the first filled[row] slots of the caches
    (b, S, Hkv, D) (a sliding window's ring buffer as it stands: the order of the slots does not matter); filled
    (b,) integers, at least 1 each, on the device (no host sync: a CUDA graph captures the step). scale:
    D^-0.5 by default. splits: the cache's splits read side by side (default `decode_splits`). Returns y
    (b, H, D) in q's dtype. constants: `decode_plan.decode_constants` for the layer."""
    b, heads, head_dim = q.shape
    slots = key_cache.shape[1]
    expected = (b, slots, constants["KV_HEADS"], head_dim)
    if heads != constants["HEADS"] or head_dim != constants["D"] or key_cache.shape != expected \
            or value_cache.shape != expected or filled.shape != (b,):
        raise ValueError(f"the decoding kernels' constants do not fit q {tuple(q.shape)}, caches "
                         f"{tuple(key_cache.shape)} / {tuple(value_cache.shape)} and filled {tuple(filled.shape)}")
    if not (key_cache.is_contiguous() and value_cache.is_contiguous()):
        raise ValueError("the key and value caches must be contiguous")
    if splits is None:
        splits = decode_splits(b, constants["KV_HEADS"], slots, multiprocessors(q.device) if q.is_cuda else None)
    block = constants["BLOCK_S"]
    split_slots = triton.cdiv(triton.cdiv(slots, splits), block) * block
    splits = triton.cdiv(slots, split_slots)  # none left empty by the rounding
    kernels = load_kernel_once(DECODE_TEMPLATE, constants, HEADER)
    q, filled = q.contiguous(), filled.to(torch.int32)
    y = torch.empty_like(q)
    direct = splits == 1
    partial = stats = None
    if not direct:
        partial = torch.empty(b, heads, splits, head_dim, dtype=torch.float32, device=q.device)
        stats = torch.empty(b, heads, splits, 2, dtype=torch.float32, device=q.device)
    kernels.attention_decode_split_fwd[(b * constants["KV_HEADS"], splits)](
        q, key_cache, value_cache, filled, partial, stats, y, slots, head_dim ** -0.5 if scale is None else scale,
        SPLIT_SLOTS=split_slots, DIRECT=direct, IEEE=key_cache.dtype == torch.float32,
        num_warps=constants["NUM_WARPS"])
    if not direct:
        kernels.attention_decode_combine_fwd[(b * heads,)](partial, stats, y, splits,
                                                            SPLITS_PAD=triton.next_power_of_2(splits))
    return y
