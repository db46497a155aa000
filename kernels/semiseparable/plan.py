"""The SSD kernels' plan: from a scan's sizes and a GPU's facts to every template constant, with the
batch rule that picks among them. Pure: no tensors, no Triton.

This is the one place that says which sizes the kernels take (`fits`), which tuning a scan gets
(kernels/semiseparable/tuning.py holds the measured choices) and which forward form a batch runs.
A layer receives its `ScanPlan`; the launcher only calls `select` with the inputs' dtype, whether a
backward follows and the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

from composer.kernels.device import ceil_div
from composer.kernels.plan import SMALLEST_16BIT_SIZE, KernelCall
from composer.kernels.semiseparable.tuning import (DEFAULT_TUNING, FP32_TUNING, SSDTuning, backward_segments,
                                                   fused_programs_per_head, fused_segments, state_pieces,
                                                   state_programs_per_head)
from composer.kernels.semiseparable.tuning_table import TRAINING_BUSY, lookup

OPERANDS = ("fp32", "bf16", "fp16")  # the inputs' dtype; mixed inputs multiply as fp32

# The split kernels' tiles, which the fused forward has no kernel to read (it saves no scores: the backward
# forms them, FORMS_SCORES; the fused walk covers one head per program).
FUSED_UNREAD = frozenset({"BLOCK_N", "STATE_BLOCK_Q", "STATE_NUM_STAGES", "STATE_NUM_WARPS", "SPLIT_DIAGONAL",
                          "OUTPUT_BLOCK_N", "HEADS_PER_PROGRAM", "SCORE_BLOCK"})


def is_tile_size(n: int) -> bool:
    """tl.arange needs powers of two and tl.dot tiles of at least 16."""
    return n >= 16 and n & (n - 1) == 0


def misfits(head_dim: int, state: int, chunk: int) -> list[str]:
    """The names of the sizes the kernels cannot tile (head_dim, state, chunk), in that order."""
    return [name for name, size in (("head_dim", head_dim), ("state", state), ("chunk", chunk))
            if not is_tile_size(size)]


def fits(head_dim: int, state: int, chunk: int) -> str | None:
    """None when the kernels take a scan of these sizes, else why not (for `mixc check` and errors)."""
    sizes = dict(head_dim=head_dim, state=state, chunk=chunk)
    bad = [f"{name} {sizes[name]}" for name in misfits(head_dim, state, chunk)]
    if not bad:
        return None
    return f"{' and '.join(bad)}: the generated SSD kernels need powers of two >= 16"


def nearest_tile_sizes(n: int) -> str:
    """The tile sizes either side of n, for a hint: `state = 16 or 32`."""
    below = max(16, 1 << max(0, n.bit_length() - 1))
    above = max(16, 1 << (n - 1).bit_length())
    return str(below) if below == above else f"{below} or {above}"


@dataclass(frozen=True)
class ScanSizes:
    """Everything the kernels are specialised on but the tiles: P (value dim), N (state), Q (chunk), heads H
    and groups G, whether a decay, dt (x scaled by dt inside) and a skip D come in, and the state flags."""

    head_dim: int
    state: int
    chunk: int
    heads: int
    groups: int
    decays: bool
    has_dt: bool = False
    has_D: bool = False
    initial_state: bool = False
    final_state: bool = False


def _fixed_count(fixed: int, what: str, seq_len: int, chunk: int) -> int:
    if fixed < 1 or (fixed > 1 and seq_len % (fixed * chunk)):
        raise ValueError(f"{what} = {fixed} must divide L = {seq_len} into whole chunks of {chunk}, or be None")
    return fixed


@dataclass(frozen=True)
class SegmentRule:
    """When a fused walk splits each sequence into segments walked side by side (`tuning.fused_segments`), and
    into how many pieces the state passing before it splits each segment (`tuning.state_pieces`): from the
    walk's programs per sequence, the chunk and the multiprocessors, or counts the tuning fixes."""

    programs_per_sequence: int
    chunk: int
    multiprocessors: int | None
    fixed: int | None = None
    fixed_pieces: int | None = None

    def count(self, batch: int, seq_len: int) -> int:
        if self.fixed is None:
            return fused_segments(batch * self.programs_per_sequence, seq_len, self.chunk, self.multiprocessors)
        return _fixed_count(self.fixed, "tuning.segments", seq_len, self.chunk)

    def pieces(self, batch: int, seq_len: int) -> int:
        """Pieces of each segment the segments' state passing walks side by side."""
        segments = self.count(batch, seq_len)
        if self.fixed_pieces is None:
            return state_pieces(batch * self.programs_per_sequence, segments, seq_len, self.chunk,
                                self.multiprocessors)
        return _fixed_count(self.fixed_pieces, "tuning.state_pieces", seq_len // segments, self.chunk)

    def can_segment(self) -> bool:
        """Whether some batch and length take more than one segment: a fixed count above one, or the rule with
        multiprocessors to fill."""
        return self.fixed > 1 if self.fixed is not None else self.multiprocessors is not None


@dataclass(frozen=True)
class BackwardSegmentRule:
    """When the backward's state passing splits each sequence into segments walked side by side
    (`tuning.backward_segments`): from its programs per sequence, the chunk and the multiprocessors, or a count
    the backward's tuning fixes."""

    programs_per_sequence: int
    chunk: int
    multiprocessors: int | None
    fixed: int | None = None

    def count(self, batch: int, seq_len: int) -> int:
        if self.fixed is None:
            return backward_segments(batch * self.programs_per_sequence, seq_len, self.chunk, self.multiprocessors)
        return _fixed_count(self.fixed, "the backward's tuning.segments", seq_len, self.chunk)

    def can_segment(self) -> bool:
        return self.fixed > 1 if self.fixed is not None else self.multiprocessors is not None


class BackwardLaunch(NamedTuple):
    """What the launcher runs one backward with: its constants and the segments its state passing splits each
    sequence into (past one, the constants are the segmented backward's: `segmented_backward_constants`)."""

    constants: dict
    segments: int = 1


class ForwardLaunch(NamedTuple):
    """What the launcher runs one forward with: the walk's constants, the segments it splits each sequence
    into (a launcher argument, never a template constant: the modules stay those the plan lists) and, past
    one segment, the constants of the state passing over the segments that runs first and the pieces of each
    segment it walks side by side."""

    constants: dict
    segments: int = 1
    segment_state: dict | None = None
    state_pieces: int = 1


@dataclass(frozen=True)
class ScanVariant:
    """One choice of constants: the launcher takes it for batches of at least `min_batch` sequences (up to the
    next variant's), `rule` saying so in words. backward is None for a forward that saves nothing. A fused
    forward also has its walk in segments: `segmented` (the walk's constants when each segment starts from a
    given state), `segment_state` (the state passing that gives each segment its leaving state) and
    `segment_rule`, which the launcher asks with the batch and the length."""

    min_batch: int
    forward: dict
    backward: dict | None
    rule: str = ""
    segmented: dict | None = None
    segment_rule: SegmentRule | None = None
    segment_state: dict | None = None
    segmented_backward: dict | None = None
    backward_rule: BackwardSegmentRule | None = None
    # How a custom-op call of this variant spells its constants (`spell_call`), made here once so that a
    # frame torch.compile traces reads it as a constant string.
    key: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", spell_call(self.forward, self.backward or {}, self.segmented,
                                                   self.segment_state, self.segment_rule, self.segmented_backward,
                                                   self.backward_rule))

    def segments(self, batch: int, seq_len: int) -> int:
        return 1 if self.segment_rule is None else self.segment_rule.count(batch, seq_len)

    def forward_launch(self, batch: int, seq_len: int) -> ForwardLaunch:
        """The forward a batch of `batch` sequences of `seq_len` steps runs: the whole walk, or its segments."""
        return forward_launch(self.forward, self.segmented, self.segment_state, self.segment_rule, batch, seq_len)

    def backward_launch(self, batch: int, seq_len: int) -> BackwardLaunch | None:
        """The backward such a batch runs (None: the forward saves nothing for one): its state passing whole or
        in segments."""
        if self.backward is None:
            return None
        return backward_launch(self.backward, self.segmented_backward, self.backward_rule, batch, seq_len)


def forward_launch(forward: dict, segmented: dict | None, segment_state: dict | None,
                   segment_rule: SegmentRule | None, batch: int, seq_len: int) -> ForwardLaunch:
    """The whole walk of `forward`, or, where `segment_rule` counts more than one segment for this batch and
    length, the `segmented` walk after the state passing of `segment_state` in the rule's pieces a segment."""
    segments = 1 if segment_rule is None else segment_rule.count(batch, seq_len)
    if segments == 1:
        return ForwardLaunch(forward)
    return ForwardLaunch(segmented, segments, segment_state, segment_rule.pieces(batch, seq_len))


def backward_launch(backward: dict, segmented_backward: dict | None, backward_rule: BackwardSegmentRule | None,
                    batch: int, seq_len: int) -> BackwardLaunch:
    """The whole backward of `backward`, or, where `backward_rule` counts more than one segment for this batch
    and length, the `segmented_backward` with that many segments."""
    segments = 1 if backward_rule is None else backward_rule.count(batch, seq_len)
    if segments == 1:
        return BackwardLaunch(backward)
    return BackwardLaunch(segmented_backward, segments)


def spell_call(forward: dict, backward: dict, segmented: dict | None = None, segment_state: dict | None = None,
               segment_rule: SegmentRule | None = None, segmented_backward: dict | None = None,
               backward_rule: BackwardSegmentRule | None = None) -> str:
    """The constants an op call runs, as the string its schema carries (an op takes no dicts): `repr` of their
    items and rules, which kernels/semiseparable/ops.py parses back in any process."""
    def items(constants):
        return None if constants is None else tuple(constants.items())

    def fields(rule):
        return None if rule is None else dataclasses.astuple(rule)
    return repr((items(forward), items(backward), items(segmented), items(segment_state), fields(segment_rule),
                 items(segmented_backward), fields(backward_rule)))


@dataclass(frozen=True)
class ScanPlan:
    """A scan's variants per (operand, needs_grad): operand the inputs' dtype ("fp32", "bf16", "fp16"),
    needs_grad whether the forward saves for a backward. Each tuple is sorted by min_batch, the first at 1."""

    sizes: ScanSizes
    variants: dict

    def select(self, operand: str, needs_grad: bool, batch: int) -> ScanVariant:
        chosen = None
        for variant in self.variants[operand, needs_grad]:
            if variant.min_batch > batch:
                break
            chosen = variant
        return chosen


def tunings_by_batch(sizes: ScanSizes, operand: str, needs_grad: bool, multiprocessors: int | None,
                     gpu: str = "*") -> list[tuple[int, SSDTuning, str]]:
    """The tunings a scan takes, as (min_batch, tuning, rule) from the smallest batch up: the measured entry
    for this GPU (tunings.json, or the user's from `mixc tune`), else the stated rule: DEFAULT_TUNING for 16-bit
    inputs, FP32_TUNING for fp32. An entry for TRAINING_BUSY takes a training forward once the split form's
    state passing has a program for every multiprocessor; without multiprocessors (the interpreter) the
    small-batch choice is the only one."""
    key = (sizes.head_dim, sizes.state)
    tuned = lookup(gpu, operand, *key) or (FP32_TUNING if operand == "fp32" else DEFAULT_TUNING)
    busy = lookup(gpu, operand, *key, regime=TRAINING_BUSY)
    if busy is None or not needs_grad or multiprocessors is None:
        return [(1, tuned, "")]
    programs = _programs(state_programs_per_head(busy, *key))
    threshold = ceil_div(multiprocessors, sizes.heads * state_programs_per_head(busy, *key))
    if threshold <= 1:
        return [(1, busy, f"{programs} state-passing programs >= {multiprocessors} multiprocessors")]
    return [(1, tuned, f"{programs} state-passing programs < {multiprocessors} multiprocessors"),
            (threshold, busy, f"{programs} state-passing programs >= {multiprocessors} multiprocessors")]


def tuning_for_batch(sizes: ScanSizes, operand: str, needs_grad: bool, batch: int, multiprocessors: int | None,
                     gpu: str = "*") -> SSDTuning:
    """The tuning `tunings_by_batch` gives a batch of `batch` sequences."""
    tunings = tunings_by_batch(sizes, operand, needs_grad, multiprocessors, gpu)
    return [tuning for start, tuning, _ in tunings if start <= batch][-1]


def _programs(tiles_per_head: int) -> str:
    return "b*H" if tiles_per_head == 1 else f"b*H*{tiles_per_head}"


def forms_by_batch(sizes: ScanSizes, tuning: SSDTuning, multiprocessors: int | None) -> list[tuple[int, bool, str]]:
    """(min_batch, fused, rule) for a tuning: its own form, else fused once its b * H * P / block_p programs
    reach a quarter of the multiprocessors, or from one sequence up where the walk may split each sequence into
    segments (`tuning.fused_segments`: tuning.segments None or above one), which multiplies its programs by up to
    1.5 a multiprocessor over them where the sequence is long enough. On the H100 at L=4096, P=64, N=128
    (results/ssd_h100_2026-11-28_1a4f531.log, "forms") the whole walk was faster from b=2 (64 programs: 0.29
    against 0.39 ms) up, and level at b=1 (32 programs), where the split form's 32 state-passing programs are
    latency-bound too; at b=1 and 32k steps the split form was 0.81x mamba_ssm (its state passing 32 programs
    walking 128 chunks each). Without multiprocessors (the interpreter) the split form is the default."""
    if tuning.fused is not None:
        return [(1, tuning.fused, "")]
    if multiprocessors is None:
        return [(1, False, "")]
    per_head = fused_programs_per_head(tuning, sizes.head_dim)
    programs = _programs(per_head)
    if tuning.segments is None or tuning.segments > 1:
        return [(1, True, f"{programs} fused programs in segments >= {multiprocessors} multiprocessors / 4")]
    threshold = ceil_div(multiprocessors, 4 * sizes.heads * per_head)
    fused_rule = f"{programs} fused programs >= {multiprocessors} multiprocessors / 4"
    if threshold <= 1:
        return [(1, True, fused_rule)]
    return [(1, False, f"{programs} fused programs < {multiprocessors} multiprocessors / 4"),
            (threshold, True, fused_rule)]


def plan_scan(sizes: ScanSizes, multiprocessors: int | None, tuning: SSDTuning | None = None,
              gpu: str = "*") -> ScanPlan:
    """Every variant of a scan on the GPU named `gpu` with `multiprocessors` (None: the interpreter). tuning:
    one tuning for every operand and regime (benchmarks and tests) instead of the measured ones."""
    reason = fits(sizes.head_dim, sizes.state, sizes.chunk)
    if reason is not None:
        raise ValueError(reason)
    variants = {}
    for operand in OPERANDS:
        for needs_grad in (True, False):
            tunings = ([(1, tuning, "")] if tuning is not None
                       else tunings_by_batch(sizes, operand, needs_grad, multiprocessors, gpu))
            variants[operand, needs_grad] = _variants(sizes, operand, needs_grad, tunings, multiprocessors)
    return ScanPlan(sizes, variants)


def _variants(sizes, operand, needs_grad, tunings, multiprocessors) -> tuple[ScanVariant, ...]:
    """The tunings' batch ranges crossed with each one's forms: one variant per range, same constants merged."""
    out: list[ScanVariant] = []
    ends = [start for start, _, _ in tunings[1:]] + [None]
    for (start, tuning, tuning_rule), end in zip(tunings, ends):
        for form_start, fused, form_rule in forms_by_batch(sizes, tuning, multiprocessors):
            if end is not None and form_start >= end:
                continue
            forward, backward = scan_constants(sizes, operand, tuning, fused, needs_grad)
            rule = " and ".join(r for r in (tuning_rule, form_rule) if r)
            segmented = segment_rule = segment_state = None
            if fused:
                entering = dataclasses.replace(sizes, initial_state=True)
                segmented = scan_constants(entering, operand, tuning, fused, needs_grad)[0]
                segment_rule = SegmentRule(sizes.heads * fused_programs_per_head(tuning, sizes.head_dim),
                                           sizes.chunk, multiprocessors, tuning.segments, tuning.state_pieces)
                segment_state = segment_state_constants(segmented, sizes.initial_state)
            segmented_backward = backward_rule = None
            if needs_grad:
                segmented_backward = segmented_backward_constants(backward)
                state_tiles = (backward["P"] // backward["BLOCK_P"]) * (backward["N"] // backward["BLOCK_N"])
                backward_rule = BackwardSegmentRule(sizes.heads * state_tiles, sizes.chunk, multiprocessors,
                                                    (tuning.backward or tuning).segments)
            variant = ScanVariant(max(start, form_start), forward, backward if needs_grad else None, rule,
                                  segmented, segment_rule, segment_state, segmented_backward, backward_rule)
            if out and out[-1].forward == forward and out[-1].backward == variant.backward:
                continue
            out.append(variant)
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _cached_constants(sizes: ScanSizes, operand: str, tuning: SSDTuning, fused: bool, needs_grad: bool):
    backward_tuning = tuning.backward or tuning
    backward = direction_constants(sizes, operand, backward_tuning)
    forward = direction_constants(sizes, operand, tuning, readers_block_q=backward["SCORE_BLOCK"], fused=fused,
                                  saves_for_backward=needs_grad)
    if fused:
        # The fused walk saves no scores: at b=2, L=32768, G=8 the forward's chunk_scores_fwd took 0.15 of a
        # 1.10 ms training forward beside the walk, which left it no multiprocessors
        # (results/segments_ab_h200_2026-12-02_4d3ead7.log). The backward forms them beside its state passing,
        # which runs one program per head and state tile, and the scores need not live from forward to backward.
        backward = dict(backward, FORMS_SCORES=True)
    return forward, backward


def scan_constants(sizes: ScanSizes, operand: str, tuning: SSDTuning, fused: bool,
                   needs_grad: bool = True) -> tuple[dict, dict]:
    """The forward's and the backward's constants: the backward reads the forward's scores in blocks of its
    own SCORE_BLOCK (>= its BLOCK_Q), so the forward writes blocks at least that large: an unwritten corner of
    a block would reach a product as garbage. The dicts are shared between calls: read them, never change them."""
    return _cached_constants(sizes, operand, tuning, fused, needs_grad)


def direction_constants(sizes: ScanSizes, operand: str, tuning: SSDTuning, readers_block_q: int = 0,
                        fused: bool | None = None, saves_for_backward: bool = True) -> dict:
    """The template constants of one direction's kernels: everything they are specialised on.
    readers_block_q: the largest block in which the other direction reads this one's scores (the
    backward reads the forward's), so SCORE_BLOCK covers it too. fused, saves_for_backward: the
    forward's form, and whether it writes what the backward reads (the split form always does);
    None for the backward, which has one form."""
    head_dim, state_size, chunk_len = sizes.head_dim, sizes.state, sizes.chunk
    block_p, block_q = min(tuning.block_p, head_dim), min(tuning.block_q, chunk_len)
    block_n = min(tuning.block_n, state_size)
    # A whole (N, block_p) state beside a larger output block crowds shared memory past N = 128.
    output_block_n = min(tuning.output_block_n or (state_size if state_size <= 128 else 64), state_size)
    state_block_q = min(tuning.state_block_q or block_q, chunk_len)
    # The backward's dx programs take their own steps (dx_block_q) and read the scores in blocks that large.
    dx_block_q = min(tuning.dx_block_q or block_q, chunk_len) if fused is None else block_q
    score_block = min(max(tuning.block_s or block_q, block_q, dx_block_q, readers_block_q), chunk_len)
    operand = tuning.operand or operand
    # kernels/plan.py's SMALLEST_16BIT_SIZE; a tuning that names its operand keeps it
    if operand != "fp32" and tuning.operand is None and min(head_dim, state_size, chunk_len) < SMALLEST_16BIT_SIZE:
        operand = "fp32"
    if not all(is_tile_size(block) for block in (block_p, block_q, block_n, score_block, state_block_q,
                                                 output_block_n, dx_block_q)):
        raise ValueError(f"tuning.block_p = {tuning.block_p}, block_q = {tuning.block_q}, block_n = "
                         f"{tuning.block_n}, block_s = {tuning.block_s}, state_block_q = {tuning.state_block_q}, "
                         f"output_block_n = {tuning.output_block_n} and dx_block_q = {tuning.dx_block_q} must be "
                         "powers of two >= 16")
    heads_per_group = sizes.heads // sizes.groups
    constants = dict(
        P=head_dim, N=state_size, Q=chunk_len, HEADS_PER_GROUP=heads_per_group,
        DECAY="data" if sizes.decays else "none", HAS_DT=sizes.has_dt, HAS_D=sizes.has_D,
        HAS_INITIAL_STATE=sizes.initial_state, RETURN_FINAL_STATE=sizes.final_state,
        OPERAND=operand,
        # Only fp32 operands have a precision to choose; "none" keeps 16-bit modules from splitting on it.
        DOT_PRECISION=(tuning.dot_precision or "tf32x3") if operand == "fp32" else "none",
        BLOCK_P=block_p, BLOCK_Q=block_q, BLOCK_N=block_n, SCORE_BLOCK=score_block,
        NUM_WARPS=tuning.num_warps, NUM_STAGES=tuning.num_stages, SPLIT_DIAGONAL=tuning.split_diagonal,
        STATE_BLOCK_Q=state_block_q, STATE_NUM_STAGES=tuning.state_num_stages or tuning.num_stages,
        STATE_NUM_WARPS=tuning.state_num_warps or tuning.num_warps,
        OUTPUT_BLOCK_N=output_block_n,
        # Heads of one group per output (and dx) program: a divisor of the heads per group.
        HEADS_PER_PROGRAM=math.gcd(max(1, tuning.heads_per_program), heads_per_group),
    )
    if tuning.max_registers is not None:  # absent rather than None: constants are ints, bools and words
        if not 24 <= tuning.max_registers <= 255:
            raise ValueError(f"tuning.max_registers = {tuning.max_registers} must be 24 to 255 (a thread's registers "
                             "on NVIDIA GPUs), or None for ptxas's choice")
        constants["MAX_REGISTERS"] = tuning.max_registers
    if fused is None:  # the backward: one form
        # Past N = 128 the dB kernel's (BLOCK_Q, N) fp32 product per head spills: by default its heads' terms
        # accumulate on the tensor cores instead and (decay) the dx kernel forms the leaving state's dcum shares
        # (SSDTuning.leaving_share_in_dx). At P=128, N=256, L=4096 on the H200: dB 0.70 -> 0.39 ms, dx 0.72 ->
        # 0.91, fwd+bwd 3.69 -> 3.55; at N = 128 dx's cost outweighs dB's gain (fwd+bwd +6%;
        # results/ssd_h200_2026-11-28_2fbaeeb_ab.log, call 5).
        share_in_dx = tuning.leaving_share_in_dx
        constants["LEAVING_SHARE_IN_DX"] = state_size > 128 if share_in_dx is None else share_in_dx
        constants["DX_BLOCK_Q"] = dx_block_q
        return constants
    constants.update(FUSED=fused, SAVES_FOR_BACKWARD=saves_for_backward or not fused)
    if not fused:  # the launcher's choice: only the split form has a state passing to overlap
        constants["SIDE_STREAM_SCORES"] = tuning.side_stream_scores
    if fused:  # a fused module carries only what its kernels read, so unread tiles never split the cache
        constants = {name: value for name, value in constants.items() if name not in FUSED_UNREAD}
    return constants


def segment_state_constants(walk: dict, initial_state: bool) -> dict:
    """The split forward's constants for the state passing a segmented fused walk runs first: each piece's
    leaving state from a zero state, in fp32, one program per head and BLOCK_P columns of the whole (N, BLOCK_P)
    state, as the walk holds it, from the walk's own tiles; then segment_entering_fwd combines the pieces into
    each segment's entering state, from the initial state where the scan has one (HAS_INITIAL_STATE).
    LEAVING_STATE_ONLY: the state passing walks pieces and stores their leaving states alone, no per-chunk
    states (the walk writes those the backward reads)."""
    keep = ("P", "N", "Q", "HEADS_PER_GROUP", "DECAY", "HAS_DT", "OPERAND", "DOT_PRECISION", "BLOCK_P", "BLOCK_Q")
    return dict({name: walk[name] for name in keep}, HAS_D=False, HAS_INITIAL_STATE=initial_state,
                RETURN_FINAL_STATE=True, BLOCK_N=walk["N"], SCORE_BLOCK=walk["BLOCK_Q"], NUM_WARPS=walk["NUM_WARPS"],
                NUM_STAGES=walk["NUM_STAGES"], SPLIT_DIAGONAL=True, STATE_BLOCK_Q=walk["BLOCK_Q"],
                STATE_NUM_STAGES=walk["NUM_STAGES"], STATE_NUM_WARPS=walk["NUM_WARPS"], OUTPUT_BLOCK_N=walk["N"],
                HEADS_PER_PROGRAM=1, FUSED=False, SAVES_FOR_BACKWARD=True, SIDE_STREAM_SCORES=False,
                LEAVING_STATE_ONLY=True)


def segmented_backward_constants(backward: dict) -> dict:
    """The backward's constants when its state passing walks segments side by side: SEGMENTED adds the kernels
    that give each segment its arriving gradient (segment_grad_bwd, segment_arriving_bwd) and makes
    state_passing_bwd start each segment from it; every other kernel is the whole backward's."""
    return dict(backward, SEGMENTED=True)


FORWARD_TEMPLATE, BACKWARD_TEMPLATE = "ssd_forward.py.jinja", "ssd_backward.py.jinja"


def scan_calls(plan: ScanPlan, operand: str, needs_grad: bool) -> list[KernelCall]:
    """The specialisations a scan renders at one operand and regime, each forward with its batch rule;
    variants that share their backward list it once."""
    variants = plan.variants[operand, needs_grad]
    calls: list[KernelCall] = []
    for variant in variants:
        when = variant.rule if len(variants) > 1 else ""
        calls.append(KernelCall(FORWARD_TEMPLATE, tuple(sorted(variant.forward.items())), when))
        if variant.backward is not None:
            backward = KernelCall(BACKWARD_TEMPLATE, tuple(sorted(variant.backward.items())))
            if backward not in calls:
                calls.append(backward)
    return calls


def plan_modules(plan: ScanPlan) -> list[tuple[str, tuple]]:
    """Every (template, sorted constants) the launcher can load for this plan at run time, across operands,
    regimes and variants: each forward, its segmented walk and the segments' state passing (where some batch
    and length segment it), and each backward, whole and (where some batch and length segment it) segmented. Finite and known before anything runs, so an exporter can
    render exactly these."""
    modules: list[tuple[str, tuple]] = []

    def add(template: str, constants: dict) -> None:
        module = (template, tuple(sorted(constants.items())))
        if module not in modules:
            modules.append(module)

    for variants in plan.variants.values():
        for variant in variants:
            add(FORWARD_TEMPLATE, variant.forward)
            if variant.segment_rule is not None and variant.segment_rule.can_segment():
                add(FORWARD_TEMPLATE, variant.segmented)
                add(FORWARD_TEMPLATE, variant.segment_state)
            if variant.backward is not None:
                add(BACKWARD_TEMPLATE, variant.backward)
                if variant.backward_rule.can_segment():
                    add(BACKWARD_TEMPLATE, variant.segmented_backward)
    return modules


@dataclass(frozen=True)
class ScanLayerPlan:
    """The plan entry a layer on the SSD kernels receives: its scans' plans (Hydra's two directions share one;
    linear attention has values and normaliser) and its fused output norm's constants (None: no norm)."""

    scans: tuple
    norm: dict | None = None
    prefill: tuple = ()  # the scans continuing a decoding cache (state in and out), for layers that decode

    def loadable(self) -> list[KernelCall]:
        """Every specialisation a layer with this entry may load at run time (`plan_modules` of each scan, the
        decoding step, the fused norm): what an export renders."""
        calls: list[KernelCall] = []
        for scan in self.scans + self.prefill:
            if scan is not None:
                calls += [KernelCall(template, constants) for template, constants in plan_modules(scan)]
        for scan in self.prefill:
            calls.append(KernelCall(STEP_TEMPLATE, tuple(sorted(step_constants(scan.sizes).items()))))
        if self.norm is not None:
            calls.append(KernelCall("gated_rmsnorm.py.jinja", tuple(sorted(self.norm.items()))))
        return list(dict.fromkeys(calls))


STEP_TEMPLATE = "ssd_step.py.jinja"


def step_constants(sizes: ScanSizes, tuning: SSDTuning = SSDTuning()) -> dict:
    """The decoding step kernel's template constants for a scan of these sizes."""
    return dict(P=sizes.head_dim, N=sizes.state, HEADS_PER_GROUP=sizes.heads // sizes.groups,
                DECAY="data" if sizes.decays else "none", BLOCK_P=min(tuning.block_p, sizes.head_dim),
                NUM_WARPS=tuning.num_warps)
