"""The fused decoding step's plan (pure: sizes -> constants, no tensors): the constants of
codegen/templates/ssd_decode_step.py.jinja for a Mamba-2 layer, and the plan entry that lists that kernel
beside the scans' so an export renders it too."""

from __future__ import annotations

from dataclasses import dataclass

from composer.kernels.plan import KernelCall
from composer.kernels.semiseparable.plan import ScanLayerPlan

DECODE_TEMPLATE = "ssd_decode_step.py.jinja"
CONV_BLOCK = 256  # channels a conv program takes
STEP_TILE = 2048  # state elements a step program takes: BLOCK_P rows of N (16 rows at N = 128, as mamba_ssm)
STEP_WARPS = 4
# The fused GEMMs (in_proj_conv_fwd, out_proj_fwd) are row-times-matrix products (no tl.dot), so narrow programs
# are many. Each program holds its BLOCK_N outputs' weights whole (BLOCK_K: the input width's power of two) so
# that, launched with PDL, it loads them while the kernel before it finishes; GEMM_TILE bounds BLOCK_M x BLOCK_N x
# BLOCK_K, WEIGHTS_PER_THREAD sets the warps. Mamba-2 130M at batch 1: in_proj 4 outputs x 1024 in 2 warps (838
# programs), out_proj 2 x 2048 in 2 warps (384). Before (K tiles in a loop, swept on an H200 at batch 1 with
# benchmarks/decode_tiles.py): in_proj 3.1 us at 4 outputs, K 256, 1 warp; out_proj 3.4 us at 1-4 outputs, K 512,
# 1 warp, 4.2 us at 2 warps.
GEMM_TILE = 4096
GEMM_MAX_BLOCK_N = 4
WEIGHTS_PER_THREAD = 64
GEMM_MAX_WARPS = 8
# Batches above this decode around torch's GEMMs (cuBLAS) instead. Whole layer step, Mamba-2 130M, H200, at 4
# warps and K 256 (benchmarks/decode_tiles.py): three kernels 16.1 / 21.6 / 26.4 / 40.0 us at batch 1 / 2 / 4 / 8
# against 18.8 / 20.7 / 21.8 / 22.7 us around torch's GEMMs; a row-times-matrix product reads each weight once a
# BLOCK_M rows, cuBLAS's tiles once a batch.
FUSED_MAX_BATCH = 2


def decode_constants(head_dim: int, state: int, heads: int, groups: int, conv: int, gate: bool, decay: str,
                     skip: bool) -> dict:
    """The fused step's constants for a Mamba-2 layer of these sizes, whose in_proj packs [z, x, B, C, dt]
    (z when `gate`, dt when decay is data) and whose short conv has `conv` >= 2 taps."""
    if conv < 2:
        raise ValueError(f"the fused decoding step needs a short conv of 2 taps or more; got conv = {conv}")
    gate_width = heads * head_dim if gate else 0
    channels = heads * head_dim + 2 * groups * state
    constants = dict(P=head_dim, N=state, HEADS_PER_GROUP=heads // groups, GROUPS=groups,
                     U_WIDTH=gate_width + channels + (heads if decay == "data" else 0), XBC_OFFSET=gate_width,
                     CHANNELS=channels, WIDTH=conv, BLOCK_C=CONV_BLOCK,
                     BLOCK_P=min(head_dim, max(1, STEP_TILE // state)), NUM_WARPS=STEP_WARPS, DECAY=decay, HAS_D=skip)
    if decay == "data":
        constants["DT_OFFSET"] = gate_width + channels
    return constants


@dataclass(frozen=True)
class GemmTiles:
    """A fused decoding GEMM's launch: rows, outputs and inputs (the width's power of two) a program takes, and
    its warps."""

    block_m: int
    block_n: int
    block_k: int
    warps: int


def gemm_tiles(batch: int, width: int) -> GemmTiles:
    """The tiles of a fused decoding GEMM over `batch` rows reading `width` inputs a row: rows in the batch's
    power of two up to 8, the whole width, as many outputs (up to GEMM_MAX_BLOCK_N) as keep GEMM_TILE products
    a program, and a warp per 32 x WEIGHTS_PER_THREAD of them (up to GEMM_MAX_WARPS)."""
    block_m = min(8, 1 << (batch - 1).bit_length())
    block_k = 1 << (width - 1).bit_length()
    block_n = max(1, min(GEMM_MAX_BLOCK_N, GEMM_TILE // (block_m * block_k)))
    warps = max(1, min(GEMM_MAX_WARPS, block_m * block_n * block_k // (32 * WEIGHTS_PER_THREAD)))
    return GemmTiles(block_m, block_n, block_k, warps)


def fused_reason(batch: int) -> str | None:
    """Why `batch` rows decode around torch's GEMMs rather than in the three-kernel step (in_proj_conv_fwd,
    ssd_decode_step_fwd, out_proj_fwd), or None: the three kernels take them. Any widths: the GEMM programs hold
    their rows' whole width as a masked power-of-two tile."""
    if batch > FUSED_MAX_BATCH:
        return f"batch {batch} is above {FUSED_MAX_BATCH}, where torch's GEMMs are faster"
    return None


@dataclass(frozen=True)
class DecodingLayerPlan(ScanLayerPlan):
    """A Mamba-2 layer's plan entry: the scans' and the norm's (ScanLayerPlan), and the fused decoding step's
    constants (`decode_constants`; None: the layer has no short conv and decodes with the step kernel alone)."""

    decode: dict | None = None

    def loadable(self) -> list[KernelCall]:
        calls = super().loadable()
        if self.decode is not None:
            calls.append(KernelCall(DECODE_TEMPLATE, tuple(sorted(self.decode.items()))))
        return calls
