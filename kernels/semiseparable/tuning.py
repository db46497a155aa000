"""Launch choices for the generated SSD kernels: the tuning knobs, the tiles measured per (P, N), and
when the fused forward runs. They change speed, never results (operand types and dot precision aside:
rounding). `chunk.py` turns them into template constants.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from composer.kernels.device import multiprocessors


@dataclass(frozen=True)
class SSDTuning:
    """Launch choices that change speed, not results (dot_precision and operand aside: rounding).

    block_p      head-dim tile, capped at P.
    block_q      tile of a chunk's steps, capped at Q: a program holds at most (block_q, block_q) of the
                 chunk's (Q, Q) matrix and (block_q, N) of B or C, whatever the chunk length.
    block_n      state-size tile of the sequential state-passing kernels, capped at N: smaller tiles run
                 more programs side by side, each reading x or dy more often.
    num_warps    warps per program.
    num_stages   Triton's software-pipelining depth of the kernels' loops: more stages hide more load
                 latency and take more shared memory.
    block_s      tile of the kernels that write the per-group (Q, Q) scores and dscores; None: block_q.
                 It is raised to every block_q that reads those blocks, so readers load whole written blocks.
    dot_precision  precision of fp32 operands in tl.dot; None: "tf32x3" (fp32-accurate on tensor cores;
                 "ieee" is exact and several times slower).
    operand      None: the inputs' own type, so 16-bit inputs are multiplied as 16-bit operands, as
                 mamba_ssm does (products formed in fp32, such as decayed scores and states, round to it
                 first); "fp32": multiply 16-bit inputs as fp32 (slower, one rounding fewer).
    heads_per_program  heads of one group that one output program (forward: chunk_scan_fwd; backward:
                 chunk_scan_bwd_dx) covers, sharing its loads of the scores and the C (or B) tile;
                 lowered to a divisor of the heads per group.
    split_diagonal  output and dx programs split each decay off the diagonal block into a row and a column
                 weight (no exp per element) and take the diagonal block after their loop; False: one loop
                 over every block with per-element decays (each program's last load stays pipelined).
    output_block_n  split forward and backward: state-size tile of the output kernel's C h^T (the entering
                 state's part of y) and of the dx kernel's B G^T; None: N (one product) up to N = 128, else 64.
                 A smaller tile streams the (N, block_p) state through shared memory in pieces, so larger
                 output blocks (block_q) fit beside it.
    state_block_q, state_num_stages  steps at a time and pipelining stages of the two sequential
                 state-passing kernels; None: block_q and num_stages.
    fused        forward only: True runs the fused kernel (one program per head and block_p columns walks
                 the sequence block_q steps at a time, state in registers: x read once, no states pass
                 through memory unless the backward needs them); False the split kernels; None: fused where
                 its b * H * P // block_p programs keep enough of the GPU busy (`fused_pays`), else split.
    backward     the backward kernels' own choices (they hold more tiles at once); None: these.
    """

    block_p: int = 64
    block_q: int = 64
    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3
    block_s: int | None = None
    heads_per_program: int = 1
    split_diagonal: bool = True
    output_block_n: int | None = None
    state_block_q: int | None = None
    state_num_stages: int | None = None
    fused: bool | None = None
    dot_precision: str | None = None
    operand: str | None = None
    backward: "SSDTuning | None" = None


# From the H100 sweeps at L=4096, H=32, chunk 256, bf16, every (P, N) in {64, 128} x {64, 128, 256}
# (benchmarks/ssd.py --sweep; results/ssd_sweep_h100_2026-11-2*.log). Split form: the whole head dim in
# one tile (block_p caps at P), the state passed in (P, 128) tiles forward and (P, 64) backward, dscores
# written in 64-step blocks. fp32 operands take twice the shared memory of 16-bit ones, so they keep
# smaller tiles. The fused forward wins up to N = 128 (64 columns of a head per program, 64 steps at a
# time, 4 warps, 2 stages); at N = 256 its (N, 64) fp32 state spills and the split form stays faster.
DEFAULT_TUNING = SSDTuning(block_p=128, block_q=32, block_n=128, fused=False,
                           backward=SSDTuning(block_p=128, block_q=32, block_n=64, block_s=64))
FP32_TUNING = SSDTuning(block_p=32, block_q=32, num_warps=4, fused=False)
# Where the sweeps' picks differ from DEFAULT_TUNING (16-bit inputs, keyed by (P, N)): at P = 64 the
# output kernel takes 64-step blocks, and so does the backward up to N = 128; up to N = 128 the forward is
# fused wherever its programs keep the GPU busy (those tiles are the split form's P = 64 picks too).
# At N = 256 the output and dx kernels take the state in 64-entry pieces (output_block_n), which lets the
# output kernel use 64-step blocks at P = 128 too, and the state passing runs 3 stages deep: forward
# 1.40 -> 0.87 ms at L=4096, P=128 and 0.76 -> 0.58 at P=64 (results/ssd_sweep_h200_2026-11-28_session5.log,
# then ssd_h100_2026-11-28_session5.log).
_P64 = SSDTuning(block_p=64, block_q=64, block_n=128, num_stages=2,
                 backward=SSDTuning(block_p=64, block_q=64, block_n=64, num_stages=2))
_P128_FUSED = dataclasses.replace(_P64, backward=DEFAULT_TUNING.backward)
# One tuning for both head dims at N = 256: block_p caps at P, so at P = 64 it is the P = 64 pick.
_N256 = SSDTuning(block_p=128, block_q=64, block_n=128, num_stages=2, output_block_n=64, state_num_stages=3,
                  fused=False, backward=dataclasses.replace(DEFAULT_TUNING.backward, output_block_n=64))
TUNED_16BIT: dict[tuple[int, int], SSDTuning] = {
    (64, 64): _P64,
    (64, 128): _P64,
    (64, 256): _N256,
    (128, 64): _P128_FUSED,
    (128, 128): _P128_FUSED,
    (128, 256): _N256,
}


def default_tuning(x: torch.Tensor, B: torch.Tensor) -> SSDTuning:
    """The tiles for these inputs' types and (P, N) when the caller gives none."""
    if x.dtype == B.dtype and x.dtype != torch.float32:
        return TUNED_16BIT.get((x.shape[3], B.shape[3]), DEFAULT_TUNING)
    return FP32_TUNING


def fused_pays(programs: int, device: torch.device) -> bool:
    """Whether `programs` fused-forward programs keep enough of the GPU busy: one per four
    multiprocessors. On the H100 at L=4096, P=64, N=128 (results/ssd_h100_2026-11-28_session4.log,
    "forms") the fused form was faster from b=2 (64 programs: 0.29 against 0.39 ms) up, and level at
    b=1 (32 programs), where the split form is latency-bound too. Off CUDA (the interpreter) the split
    form is the default."""
    return device.type == "cuda" and 4 * programs >= multiprocessors(device)
