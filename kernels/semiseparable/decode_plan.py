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
GEMM_WARPS = 4  # warps a program of the decoding step's fused in_proj and out_proj GEMMs
# A GEMM program takes 32 outputs where that still makes GEMM_MIN_PROGRAMS programs a row tile, else 16: at batch
# 1 the step is the weights' read, and too few programs cannot draw the bandwidth (Mamba-2 130M: in_proj's 3352
# outputs make 105 programs of 32; out_proj's 768 would make 24, so 48 of 16). Unmeasured: a guess to time.
GEMM_MIN_PROGRAMS = 64


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
                     GEMM_WARPS=GEMM_WARPS)
    if decay == "data":
        constants["DT_OFFSET"] = gate_width + channels
    return constants


def gemm_tiles(batch: int, outputs: int) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N) of a fused decoding GEMM over `batch` rows and `outputs` outputs: rows in tiles of 16,
    32 or 64 (tl.dot's smallest is 16), outputs in 32s where GEMM_MIN_PROGRAMS remain, else 16s."""
    block_m = 16 if batch <= 16 else 32 if batch <= 32 else 64
    return block_m, 32 if -(-outputs // 32) >= GEMM_MIN_PROGRAMS else 16


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
