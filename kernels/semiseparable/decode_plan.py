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
# Warps of a program of in_proj_conv_fwd and of out_proj_fwd, and the outputs either takes. The GEMMs are
# row-times-matrix products (no tl.dot), so narrow programs are many: Mamba-2 130M's in_proj makes 838 at batch 1,
# its out_proj 192. Swept on an H200 at batch 1 (benchmarks/decode_tiles.py: 2, 4 or 8 outputs, K tiles 128-512,
# 1-8 warps): in_proj 3.4 us at 4 outputs, K 256, 1 warp (5.8 us at 4 warps); out_proj 4.9 us at 4 outputs,
# K 512, 2 warps (7.6 us at K 256, 4 warps). out_proj's programs also read the whole gated row for its norm.
IN_PROJ_WARPS = 1
OUT_PROJ_WARPS = 2
GEMM_BLOCK_N = 4
GEMM_TILE = 8192  # BLOCK_M x GEMM_BLOCK_N x BLOCK_K products a program holds at once
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
                     BLOCK_P=min(head_dim, max(1, STEP_TILE // state)), NUM_WARPS=STEP_WARPS, DECAY=decay, HAS_D=skip,
                     IN_PROJ_WARPS=IN_PROJ_WARPS, OUT_PROJ_WARPS=OUT_PROJ_WARPS,
                     GEMM_BLOCK_N=GEMM_BLOCK_N)
    if decay == "data":
        constants["DT_OFFSET"] = gate_width + channels
    return constants


def gemm_tiles(batch: int, width: int) -> tuple[int, int] | None:
    """(BLOCK_M, BLOCK_K) of a fused decoding GEMM over `batch` rows reading `width` inputs a row: rows in the
    batch's power of two up to 8, the widest K tile of 512, 256, 128, 64, 32 or 16 that divides `width` and
    keeps GEMM_TILE products a program. None: no K tile divides `width`."""
    block_m = min(8, 1 << (batch - 1).bit_length())
    return next(((block_m, block_k) for block_k in (512, 256, 128, 64, 32, 16)
                 if width % block_k == 0 and block_m * GEMM_BLOCK_N * block_k <= GEMM_TILE), None)


def fused_reason(batch: int, d_model: int, d_inner: int) -> str | None:
    """Why a layer of these widths decodes `batch` rows around torch's GEMMs rather than in the three-kernel step
    (in_proj_conv_fwd, ssd_decode_step_fwd, out_proj_fwd), or None: the three kernels take it."""
    for name, width in (("d_model", d_model), ("heads x head_dim", d_inner)):
        if width % 16:
            return f"{name} = {width} is not a multiple of 16"
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
