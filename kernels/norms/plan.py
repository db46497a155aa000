"""The fused gated RMSNorm's constants for a row width and a gate. Pure: no tensors, no Triton."""

from __future__ import annotations

TILE_ELEMENTS = 8192  # a program's (ROWS, BLOCK_W) tile: enough rows per program to hide a narrow row's latency
# Warps a tile: 32 elements a thread. With 4 warps (64 a thread) the backward, which holds eight such tiles at
# once, spilled 0.4 to 1.1 KB a thread at every width up to 1024 on sm_90a
# (benchmarks/results/norm_resources_sm90a_2026-12-04_ac4539d.log); 8 spill nothing from width 64 to 4096.
TILE_WARPS = 8
TEMPLATE = "gated_rmsnorm.py.jinja"


def norm_constants(width: int, has_gate: bool) -> dict:
    """Any width: the kernel masks a power-of-two tile of at least 16."""
    block_w = max(16, 1 << (width - 1).bit_length())
    return dict(W=width, BLOCK_W=block_w, ROWS=max(1, TILE_ELEMENTS // block_w), HAS_GATE=has_gate,
                NUM_WARPS=TILE_WARPS)
