"""The fused gated RMSNorm's constants for a row width and a gate. Pure: no tensors, no Triton."""

from __future__ import annotations

TILE_ELEMENTS = 8192  # a program's (ROWS, BLOCK_W) tile: enough rows per program to hide a narrow row's latency
TEMPLATE = "gated_rmsnorm.py.jinja"


def norm_constants(width: int, has_gate: bool) -> dict:
    """Any width: the kernel masks a power-of-two tile of at least 16."""
    block_w = max(16, 1 << (width - 1).bit_length())
    return dict(W=width, BLOCK_W=block_w, ROWS=max(1, TILE_ELEMENTS // block_w), HAS_GATE=has_gate,
                NUM_WARPS=4 if block_w <= 1024 else 8)
