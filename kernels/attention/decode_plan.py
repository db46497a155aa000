"""The attention decoding step's plan (pure: sizes -> constants, no tensors): the constants of
codegen/templates/attention_decode.py.jinja for a layer's heads, and how many splits of the cache a step reads
side by side (split-KV: flash-decoding's answer to a batch too small to fill the GPU with one program a head)."""

from __future__ import annotations

from dataclasses import dataclass

from composer.kernels.plan import KernelCall

DECODE_TEMPLATE = "attention_decode.py.jinja"
BLOCK_S = 64       # cache slots a program reads at once
DECODE_WARPS = 4
# Split the cache while a step's programs (batch x kv heads x splits) stay under SPLIT_PROGRAMS_PER_SM a
# multiprocessor and each split keeps SPLIT_MIN_SLOTS slots or more: at batch 1 with 8 kv heads one program a head
# leaves 124 of an H200's 132 multiprocessors idle while a 32k-token cache streams through 8. Unmeasured guesses.
SPLIT_PROGRAMS_PER_SM = 2
SPLIT_MIN_SLOTS = 256


def fits(head_dim: int) -> str | None:
    """Why the decoding kernels cannot take heads of `head_dim`, or None: a tile's head dim is a power of two
    from 16 (tl.dot's smallest) to 256."""
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        return f"head_dim {head_dim} is not a power of two from 16 to 256"
    return None


def decode_constants(head_dim: int, heads: int, kv_heads: int) -> dict:
    """The decoding kernels' constants: GROUP query heads read each kv head (GQA), as GROUP_PAD rows of a tile
    (at least 16, tl.dot's smallest)."""
    group = heads // kv_heads
    return dict(D=head_dim, HEADS=heads, KV_HEADS=kv_heads, GROUP=group,
                GROUP_PAD=max(16, 1 << (group - 1).bit_length()), BLOCK_S=BLOCK_S, NUM_WARPS=DECODE_WARPS)


def decode_splits(batch: int, kv_heads: int, slots: int, multiprocessors: int | None) -> int:
    """Splits of a cache of `slots` slots a step reads side by side (a power of two): doubled while the programs
    stay under SPLIT_PROGRAMS_PER_SM a multiprocessor and each split keeps SPLIT_MIN_SLOTS slots. One without
    multiprocessors (the interpreter). Fixed by the batch and the cache's size alone, so a CUDA graph keeps it."""
    if multiprocessors is None:
        return 1
    splits = 1
    while (2 * batch * kv_heads * splits <= SPLIT_PROGRAMS_PER_SM * multiprocessors
           and slots // (2 * splits) >= SPLIT_MIN_SLOTS):
        splits *= 2
    return splits


@dataclass(frozen=True)
class AttentionDecodePlan:
    """An attention layer's plan entry: the decoding kernels' constants (prefill and training run torch's SDPA)."""

    constants: dict

    def calls(self) -> list[KernelCall]:
        return [KernelCall(DECODE_TEMPLATE, tuple(sorted(self.constants.items())))]

    def loadable(self) -> list[KernelCall]:
        return self.calls()
