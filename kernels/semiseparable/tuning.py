"""Launch choices for the generated SSD kernels: the tuning knobs, the tiles measured per (P, N), and
when the fused forward runs. They change speed, never results (operand types and dot precision aside:
rounding). The measured choices live in tunings.json (tuning_table.py); `plan.py` turns them into template
constants and batch rules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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
    state_block_q, state_num_stages, state_num_warps  steps at a time, pipelining stages and warps of the
                 two sequential state-passing kernels; None: block_q, num_stages and num_warps.
    max_registers  registers a thread may use in every kernel but the state-passing ones (Triton's maxnreg);
                 None: ptxas's choice. With 8 warps a cap of 128 lets two programs share a multiprocessor's
                 register file where ptxas would take a few more and leave room for one.
    fused        forward only: True runs the fused kernel (one program per head and block_p columns walks
                 the sequence block_q steps at a time, state in registers: x read once, no states pass
                 through memory unless the backward needs them); False the split kernels; None: fused where
                 its b * H * P // block_p programs keep enough of the GPU busy, which a walk that may segment does
                 from one sequence up (plan.forms_by_batch), else split.
    leaving_share_in_dx  backward only: the dx kernel forms each head's share of the leaving state's dcum
                 (it holds B G^T already) and dB's loop over a group's heads is products alone; False: dB forms
                 the shares from a (block_q, N) fp32 product per head. None: True past N = 128, where that
                 product spills.
    dx_block_q   backward only: steps per dx program (chunk_scan_bwd_dx), which reads the chunk's (N, block_p)
                 state gradient once per program; None: block_q. dC and dB hold (block_q, N) fp32 products, so
                 past N = 128 they keep smaller blocks than dx can take.
    segments     fused forward: the walk splits each sequence into this many segments of whole chunks,
                 walked side by side from their entering states (`fused_segments`); None: `fused_segments`
                 picks. Backward (this field of `backward`, or of the forward's tuning without one): the
                 state passing's segments, walked side by side from their arriving gradients
                 (`backward_segments`). A given count must divide the sequence into whole chunks.
    state_pieces fused forward walked in segments: the state passing that gives each segment its entering state
                 walks each segment in this many pieces side by side (`state_pieces`); None: `state_pieces`
                 picks. A given count must divide a segment into whole chunks.
    side_stream_scores  split forward only, on CUDA: chunk_scores_fwd runs on a second stream beside
                 state_passing_fwd, which does not read the scores, and chunk_scan_fwd waits for both. The state
                 passing's programs are few and long, so the scores fill multiprocessors they leave idle.
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
    state_num_warps: int | None = None
    max_registers: int | None = None
    fused: bool | None = None
    dot_precision: str | None = None
    operand: str | None = None
    leaving_share_in_dx: bool | None = None
    dx_block_q: int | None = None
    side_stream_scores: bool = False
    segments: int | None = None
    state_pieces: int | None = None
    backward: "SSDTuning | None" = None


def tuning_values(tuning: SSDTuning | None) -> tuple | None:
    """The tuning's fields as a tuple of plain values (the backward's nested), or None: what a frame that
    torch.compile traces may pass to a function it runs once as a constant (Dynamo cannot pass a frozen
    dataclass instance there, but reads its fields); `from_values` gives the tuning back."""
    if tuning is None:
        return None
    return tuple(tuning_values(getattr(tuning, name)) if name == "backward" else getattr(tuning, name)
                 for name in TUNING_FIELDS)


def from_values(values: tuple | None) -> SSDTuning | None:
    if values is None:
        return None
    *fields, backward = values
    return SSDTuning(*fields, backward=from_values(backward))


TUNING_FIELDS = tuple(f.name for f in dataclasses.fields(SSDTuning))  # backward last


# From the H100 sweeps at L=4096, H=32, chunk 256, bf16, every (P, N) in {64, 128} x {64, 128, 256}
# (benchmarks/ssd.py --sweep; results/ssd_sweep_h100_2026-11-2*.log). Split form: the whole head dim in
# one tile (block_p caps at P), the state passed in (P, 128) tiles forward and (P, 64) backward, dscores
# written in 64-step blocks. fp32 operands take twice the shared memory of 16-bit ones, so they keep
# smaller tiles. The fused forward won up to N = 128 there (64 columns of a head per program, 64 steps at a
# time, 4 warps, 2 stages); at N = 256 its (N, 64) fp32 state spills and the split form stays faster.
DEFAULT_TUNING = SSDTuning(block_p=128, block_q=32, block_n=128, fused=False,
                           backward=SSDTuning(block_p=128, block_q=32, block_n=64, block_s=64))
FP32_TUNING = SSDTuning(block_p=32, block_q=32, num_warps=4, fused=False)
# The measured choices per (P, N), operand and regime are data: tunings.json, read by tuning_table.py.


def fused_programs_per_head(tuning: SSDTuning, P: int) -> int:
    """The fused forward's programs per head: one per block_p columns."""
    return P // min(tuning.block_p, P)


def state_programs_per_head(tuning: SSDTuning, P: int, N: int) -> int:
    """The split form's state-passing programs per head: one per (block_p, block_n) tile of the state."""
    return fused_programs_per_head(tuning, P) * (N // min(tuning.block_n, N))


# The fused walk runs one program per head and block_p columns through the whole sequence, two programs a
# multiprocessor; b * H * P // block_p = 256 programs (b=8, H=32, P=64) nearly fill the H200's 264 slots. At long
# sequences and small batches they do not: b=2, L=32768, H=32, P=64, N=128 (64 programs) took 1.60 ms of inference
# (G=8; 1.58 at G=1) against 0.54 ms for the same tokens at b=8, L=8192, and mamba_ssm's 1.46 there
# (results/ssd_h200_2026-12-01_af622cc_groups_probe.log). In four segments (256 programs) it took 0.85 ms, the
# training forward 2.25 -> 1.16 and fwd+bwd 5.67 -> 4.58; at G=1 0.83, 0.99 and 3.85 ms
# (results/ssd_h200_2026-12-01_dc7b4b2_groups_segments.log). At 128 programs two segments were mixed: at b=4,
# L=16384, P=64, N=128, G=8 inference level (0.84 -> 0.83 ms), training forward 1.26 -> 1.13; at b=2, L=32768,
# P=128, N=64, G=8 slower, 0.96 -> 1.04 and 1.15 -> 1.21. So only a walk of at most one program per two
# multiprocessors is split, into segments until 1.5 programs a multiprocessor run, each segment at least
# SEGMENT_MIN_CHUNKS chunks long (a guess, unmeasured: each segment adds a state-passing pass over its inputs).
SEGMENT_MIN_CHUNKS = 4


def fused_segments(programs: int, seq_len: int, chunk_len: int, multiprocessors: int | None) -> int:
    """Segments of the sequence the fused walk runs side by side (a power of two). One where `programs` fused
    programs number more than half the multiprocessors; else doubled while programs times segments stay under
    1.5 per multiprocessor and each segment keeps whole chunks, SEGMENT_MIN_CHUNKS or more. Without
    multiprocessors (the interpreter), one."""
    if multiprocessors is None or 2 * programs > multiprocessors:
        return 1
    segments = 1
    while (2 * programs * segments < 3 * multiprocessors
           and seq_len % (2 * segments * chunk_len) == 0
           and seq_len // (2 * segments * chunk_len) >= SEGMENT_MIN_CHUNKS):
        segments *= 2
    return segments


# The segments' state passing (each piece's leaving state from a zero state, then a combine over them) has one
# program per head and block_p columns of the whole state. At P=64, N=128 in bf16 ptxas gives it 176 registers a
# thread at 4 warps (offline, sm_90a, results/ssd_resources_sm90a_2026-12-02_35eca88.log): two programs fit a
# multiprocessor's register file. It runs pieces of each segment side by side until its programs fill those
# slots, STATE_PROGRAMS_PER_MULTIPROCESSOR a multiprocessor, each piece at least STATE_PIECE_MIN_CHUNKS chunks long
# (each piece stores one state). The walk's segments already reach that at long lengths; pieces fill in where
# SEGMENT_MIN_CHUNKS keeps the segments few (b=1, L=4096: 4 segments of 128 programs, 2 pieces each). Unmeasured.
STATE_PROGRAMS_PER_MULTIPROCESSOR = 2
STATE_PIECE_MIN_CHUNKS = 2


def state_pieces(programs: int, segments: int, seq_len: int, chunk_len: int, multiprocessors: int | None) -> int:
    """Pieces of each of a walk's `segments` segments that the state passing giving them their entering states
    walks side by side (a power of two): doubled while `programs` (the walk's programs, one per head and block_p
    columns) times segments times pieces stay under STATE_PROGRAMS_PER_MULTIPROCESSOR a multiprocessor and each
    piece keeps whole chunks, STATE_PIECE_MIN_CHUNKS or more. One for an unsegmented walk or without
    multiprocessors."""
    if multiprocessors is None or segments == 1:
        return 1
    pieces = 1
    while (programs * segments * pieces * 2 <= STATE_PROGRAMS_PER_MULTIPROCESSOR * multiprocessors
           and seq_len % (2 * segments * pieces * chunk_len) == 0
           and seq_len // (2 * segments * pieces * chunk_len) >= STATE_PIECE_MIN_CHUNKS):
        pieces *= 2
    return pieces


# The backward's state passing (state_passing_bwd) walks every chunk in sequence, one program per head and
# (block_p, block_n) tile of the state. At b=8, L=8192, P=64, N=128 (512 programs, four a multiprocessor) it took
# 0.44 ms; at b=2, L=32768 (128 programs, one a multiprocessor, the same chunks in all) 0.79 ms
# (results/ssd_h200_2026-12-01_af622cc_groups_probe.log). In segments it runs twice (each segment's gradient
# arriving from zero, then the walk from the arriving gradients a combine gives), so it pays only where its
# programs number at most half the multiprocessors: then segments double while the programs stay under
# BACKWARD_PROGRAMS_PER_MULTIPROCESSOR, each segment of whole chunks, BACKWARD_SEGMENT_MIN_CHUNKS or more:
# four programs. Three fit a multiprocessor's registers at P=64, N=128 (ptxas, offline: 130 registers a thread
# at 4 warps; results/ssd_resources_sm90a_2026-12-02_35eca88.log) and ran in one wave, but on the H100 at b=1,
# L=131072 (64 programs; results/long_prefill_h100_2026-12-06_1e75f82.json, one process) eight segments (four
# a multiprocessor) made forward+backward 7.145 ms against 7.459 with three's four segments.
BACKWARD_PROGRAMS_PER_MULTIPROCESSOR = 4
# Each backward segment keeps BACKWARD_SEGMENT_MIN_CHUNKS chunks or more: on the H200 (b=1, H=32, P=64, N=128,
# chunk 256; results/long_prefill_h200_2026-12-02_922bc7b.log) four segments of 8 chunks (L=8192) made
# forward+backward 2.468 ms against 1.958 with the whole backward (and a split forward 0.15 ms slower), while
# four of 32 chunks (L=32768) gave 2.303 against 3.205 and of 128 (L=131072) 7.333 against 11.058.
BACKWARD_SEGMENT_MIN_CHUNKS = 32
# ...and there are BACKWARD_SEGMENT_MIN_COUNT segments or none: the segments' own gradient pass
# (segment_grad_bwd) costs about what two segments save. On the H200 (2026-12-03, 63828df, G=8 as above,
# results/ssd_h200_2026-12-03_63828df_ab.log) two segments at L=16384 took 0.210 + 0.161 ms where the whole
# walk takes twice L=8192's 0.193, and forward+backward 2.535 ms against 2.389 whole; four at L=32768 took
# 0.227 + 0.170 against about 0.77, and forward+backward 2.442 against 2.685.
BACKWARD_SEGMENT_MIN_COUNT = 4


def backward_segments(programs: int, seq_len: int, chunk_len: int, multiprocessors: int | None) -> int:
    """Segments of the sequence the backward's state passing walks side by side (a power of two): one where
    `programs` (its programs per sequence times the batch) number more than half the multiprocessors, else
    doubled while programs times segments stay under BACKWARD_PROGRAMS_PER_MULTIPROCESSOR a multiprocessor and
    each segment keeps whole chunks, BACKWARD_SEGMENT_MIN_CHUNKS or more; fewer than BACKWARD_SEGMENT_MIN_COUNT
    segments walk as one. Without multiprocessors, one."""
    if multiprocessors is None or 2 * programs > multiprocessors:
        return 1
    segments = 1
    while (programs * segments * 2 <= BACKWARD_PROGRAMS_PER_MULTIPROCESSOR * multiprocessors
           and seq_len % (2 * segments * chunk_len) == 0
           and seq_len // (2 * segments * chunk_len) >= BACKWARD_SEGMENT_MIN_CHUNKS):
        segments *= 2
    return segments if segments >= BACKWARD_SEGMENT_MIN_COUNT else 1
