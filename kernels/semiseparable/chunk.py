"""Triton path of the Mamba-2 SSD chunked scan: specialise, launch, differentiate.

`ssd_chunked_triton` has the signature and semantics of `reference.ssd_chunked`. The kernels are
rendered from codegen/templates/ssd_{forward,backward}.py.jinja for the constants a call implies
(head dim, state size, chunk, heads per group, decay kind, initial/final state, tile sizes), and
each specialisation is rendered and imported once per process. The templates' header comments
define the notation used here (b, L, H, P, G, N, Q, c).
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import NamedTuple

import torch
from triton.runtime.errors import OutOfResources, PTXASError

from composer.codegen.render import load_kernel_once
from composer.kernels.device import ceil_div
from composer.kernels.plan import Target
from composer.kernels.semiseparable.plan import (BackwardLaunch, ForwardLaunch, ScanPlan, ScanSizes, fits,
                                                  plan_scan, tuning_for_batch)
from composer.kernels.semiseparable.tuning import SSDTuning

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
OPERANDS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
OPERAND_DTYPES = {name: dtype for dtype, name in OPERANDS.items()}
HEADER = {"family": "semiseparable", "rendered_for": "the SSD chunked-scan launcher"}


def launch_options(constants: dict, state_passing: bool = False) -> dict:
    """Triton's launch options for one direction's kernels: the state-passing kernels take their own warps
    and stages; MAX_REGISTERS, where given, caps the other kernels' registers a thread (maxnreg)."""
    if state_passing:
        return dict(num_warps=constants["STATE_NUM_WARPS"], num_stages=constants["STATE_NUM_STAGES"])
    options = dict(num_warps=constants["NUM_WARPS"], num_stages=constants["NUM_STAGES"])
    if "MAX_REGISTERS" in constants:
        options["maxnreg"] = constants["MAX_REGISTERS"]
    return options


def launch(kernel, grid: tuple, options: dict, **args) -> None:
    """Launch `kernel` with `options` (`launch_options`), leaving out the arguments given as None: those
    the specialisation's template did not emit (log_a without decay, the initial/final state when absent).
    Tiles too large for this GPU, or a register cap too low for a kernel, raise ValueError naming the kernel
    and the SSDTuning fields to change."""
    kernel_name = getattr(kernel, "__name__", "an SSD kernel")
    try:
        kernel[grid](**{name: value for name, value in args.items() if value is not None}, **options)
    except PTXASError as error:
        needed = re.search(r"register target of (\d+)", str(error))
        if "maxnreg" not in options or not needed:
            raise
        raise ValueError(f"{kernel_name} cannot be compiled in max_registers={options['maxnreg']} registers a "
                         f"thread; ptxas asks for at least {needed.group(1)}. Raise SSDTuning.max_registers or "
                         "leave it None") from None
    except OutOfResources as error:
        raise ValueError(
            f"{kernel_name} needs {error.required} of {error.name} with these tiles and {options['num_stages']} "
            f"stages; this GPU has {error.limit}. Pass a tuning with smaller "
            "tiles: SSDTuning(block_q=..., num_stages=..., output_block_n=...), or fused=False above state size "
            "128 (None takes the measured defaults)") from None


def check_inputs(x, log_a, B, C, chunk_len, initial_state, dt=None, D=None) -> None:
    """Raise ValueError for what the kernels cannot take: a wrong shape reads out of bounds there."""
    if x.dim() != 4 or B.dim() != 4 or B.shape != C.shape:
        raise ValueError(f"expected x (b, L, H, P) and B, C (b, L, G, N); got {tuple(x.shape)}, "
                         f"{tuple(B.shape)}, {tuple(C.shape)}")
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    if B.shape[:2] != (b, L) or H % G or L == 0:
        raise ValueError(f"B and C must be (b={b}, L={L}, G, N) with H={H} a multiple of G={G}, L >= 1")
    for name, t in (("log_a", log_a), ("dt", dt)):
        if t is not None and t.shape != (b, L, H):
            raise ValueError(f"{name} must be (b, L, H) = {(b, L, H)}; got {tuple(t.shape)}")
    if D is not None and D.shape != (H,):
        raise ValueError(f"D must be (H,) = ({H},); got {tuple(D.shape)}")
    if initial_state is not None and initial_state.shape != (b, H, P, N):
        raise ValueError(f"initial_state must be (b, H, P, N) = {(b, H, P, N)}; got {tuple(initial_state.shape)}")
    reason = fits(P, N, chunk_len)
    if reason is not None:
        raise ValueError(f"{reason} (got head dim P = {P}, state size N = {N}, chunk_len = {chunk_len})")
    if chunk_len * max(H * P, G * N) >= 2**31:  # the fused walk's offsets inside a block are int32
        raise ValueError(f"chunk_len * max(H * P, G * N) = {chunk_len * max(H * P, G * N)} must stay below 2**31 "
                         "for the Triton kernels: use a shorter chunk or fewer heads per call")
    for t in (x, dt, log_a, B, C, initial_state, D):
        if t is not None and (t.dtype not in FLOAT_DTYPES or t.device != x.device):
            raise ValueError(f"inputs must be fp32/bf16/fp16 on {x.device}; got {t.dtype} on {t.device}")


class Grids(NamedTuple):
    """Launch grids, named by what one program covers (the templates' docstrings give each kernel's).
    The first axis varies fastest: programs sharing a chunk's scores or state run side by side."""

    chunk: tuple  # one chunk of one head
    state_tile: tuple  # all chunks in sequence, one (BLOCK_P, BLOCK_N) tile of one head's state
    q_p_tile: tuple  # BLOCK_Q (backward: DX_BLOCK_Q) steps and BLOCK_P columns of one chunk of HEADS_PER_PROGRAM heads
    group_q_tile: tuple  # BLOCK_Q steps of one chunk of one group
    group_block: tuple  # one (SCORE_BLOCK, SCORE_BLOCK) block of one chunk's scores of one group
    head_p_tile: tuple  # the whole sequence, BLOCK_P columns of one head (the fused forward)

    @classmethod
    def of(cls, constants: dict, batch: int, heads: int, groups: int, n_chunks: int) -> "Grids":
        p_tiles, q_tiles = constants["P"] // constants["BLOCK_P"], constants["Q"] // constants["BLOCK_Q"]
        # A fused forward's constants lack the tiles of kernels it does not have: their grids go unused.
        state_tiles = p_tiles * (constants["N"] // constants.get("BLOCK_N", constants["N"]))
        score_tiles = constants["Q"] // constants.get("SCORE_BLOCK", constants["Q"])
        heads_per_program = constants.get("HEADS_PER_PROGRAM", 1)
        output_q_tiles = constants["Q"] // constants.get("DX_BLOCK_Q", constants["BLOCK_Q"])
        return cls((n_chunks, batch * heads), (state_tiles, batch * heads),
                   (output_q_tiles * p_tiles, batch * heads // heads_per_program, n_chunks),
                   (q_tiles, batch * groups, n_chunks), (score_tiles ** 2, batch * groups, n_chunks),
                   (p_tiles, batch * heads))


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


@contextlib.contextmanager
def side_stream(device: torch.device):
    """Run the enclosed launches on this device's side stream, after the work queued so far on the current
    one (SSDTuning.side_stream_scores). The caller makes the current stream wait for it before reading what they
    wrote. Their tensors were allocated on the current stream, which waits for the side one before any later use
    or free, so the allocator needs no record_stream."""
    side = _SIDE_STREAMS.get(device)
    if side is None:
        side = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        yield


def forward_outputs(constants: dict, x, log_a, B) -> tuple:
    """The forward's outputs, unwritten (None where the constants say it has none): y, the final state,
    and what it saves for the backward (see `_forward`). The custom op's fake kernel shapes them here too."""
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    Q = constants["Q"]
    n_chunks = ceil_div(L, Q)
    y = torch.empty_like(x)
    final_state = x.new_empty(b, H, P, N) if constants["RETURN_FINAL_STATE"] else None
    scores = states = cum = None
    if constants["SAVES_FOR_BACKWARD"]:
        # Their readers multiply both on the tensor cores: 16-bit storage rounds nothing they would keep. The
        # fused forward saves no scores (its backward forms them: FORMS_SCORES).
        if not constants["FUSED"]:
            scores = scores_buffer(constants, x, G, n_chunks)
        states = x.new_empty(b, n_chunks, H, P, N, dtype=OPERAND_DTYPES[constants["OPERAND"]])
        if log_a is not None:
            cum = x.new_empty(b, H, n_chunks, Q, dtype=torch.float32)
    return y, final_state, scores, states, cum


def scores_buffer(constants: dict, x, groups: int, n_chunks: int):
    """The (b, c, G, Q, Q) per-group C . B scores, unwritten, in the operand type."""
    Q = constants["Q"]
    return x.new_empty(x.shape[0], n_chunks, groups, Q, Q, dtype=OPERAND_DTYPES[constants["OPERAND"]])


def _forward(constants: dict, x, dt, log_a, B, C, initial_state, D, segments: int = 1,
             segment_state: dict | None = None, state_pieces: int = 1):
    """Run the forward kernels. Returns y, the final state (or None), and what the backward reads
    (None each when the constants say the forward saves nothing for it): `scores` (b, c, G, Q, Q),
    C . B per chunk and group (split form only: the fused form leaves them to the backward), and `states`, the state entering each chunk (b, c, H, P, N), both in the
    operand type (x's for 16-bit operands, else fp32); `cum`, the chunk-local cumulative log decay
    (b, H, c, Q) fp32 (None without decay). segments > 1 (a fused walk's `ForwardLaunch`): the walk runs in
    that many segments side by side, after the state passing of `segment_state`'s constants over them, in
    `state_pieces` pieces a segment."""
    kernels = load_kernel_once("ssd_forward.py.jinja", constants, HEADER)
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    Q, options = constants["Q"], launch_options(constants)
    n_chunks = ceil_div(L, Q)
    sizes = dict(seq_len=L, n_heads=H, n_chunks=n_chunks)
    grids = Grids.of(constants, b, H, G, n_chunks)

    y, final_state, scores, states, cum = forward_outputs(constants, x, log_a, B)
    if cum is not None:  # the backward's, and a segmented walk's state passing reads it
        launch(kernels.chunk_cumsum_fwd, grids.chunk, options, log_a_ptr=log_a, cum_ptr=cum, **sizes)
    if constants["FUSED"]:
        y, final_state = _fused_walk(kernels, constants, x, dt, log_a, B, C, initial_state, D, y, final_state,
                                     states, cum, segments, segment_state, state_pieces)
        return y, final_state, scores, states, cum
    # The scores beside the state passing, which does not read them.
    beside = constants["SIDE_STREAM_SCORES"] and x.is_cuda
    with side_stream(x.device) if beside else contextlib.nullcontext():
        launch(kernels.chunk_scores_fwd, grids.group_block, options, B_ptr=B, C_ptr=C, scores_ptr=scores, **sizes)
    state_options = launch_options(constants, state_passing=True)
    launch(kernels.state_passing_fwd, grids.state_tile, state_options, x_ptr=x, dt_ptr=dt, cum_ptr=cum, B_ptr=B,
           states_ptr=states, initial_state_ptr=initial_state, final_state_ptr=final_state, **sizes)
    if beside:  # the output kernel reads the scores
        torch.cuda.current_stream(x.device).wait_stream(_SIDE_STREAMS[x.device])
    launch(kernels.chunk_scan_fwd, grids.q_p_tile, options, x_ptr=x, dt_ptr=dt, cum_ptr=cum, C_ptr=C,
           scores_ptr=scores, states_ptr=states, y_ptr=y, D_ptr=D, **sizes)
    return y, final_state, scores, states, cum


def _fused_walk(kernels, constants: dict, x, dt, log_a, B, C, initial_state, D, y, final_state, states, cum,
                segments: int, segment_state: dict | None, state_pieces: int):
    """The fused forward's walk, whole or (segments > 1) in segments side by side after the state passing
    over them (reading `cum` where the forward saved it, else forming its own); writes y, the final state and
    the per-chunk states in place and returns y and the final state."""
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    options, n_chunks = launch_options(constants), ceil_div(L, constants["Q"])
    if segments > 1:
        entering = _segment_entering_states(segment_state, segments, state_pieces, x, dt, log_a, B, initial_state,
                                            cum)
        segment_len = L // segments
        views = [None if t is None else t.view(b * segments, segment_len, *t.shape[2:]) for t in (x, dt, log_a, B, C, y)]
        walk_final = x.new_empty(b * segments, H, P, N) if final_state is not None else None
        launch(kernels.chunk_scan_fused_fwd, Grids.of(constants, b * segments, H, G, n_chunks).head_p_tile, options,
               x_ptr=views[0], dt_ptr=views[1], log_a_ptr=views[2], B_ptr=views[3], C_ptr=views[4], y_ptr=views[5],
               D_ptr=D, states_ptr=states, initial_state_ptr=entering, final_state_ptr=walk_final,
               seq_len=segment_len, n_heads=H, n_chunks=n_chunks // segments,
               n_blocks=ceil_div(segment_len, constants["BLOCK_Q"]))
        if final_state is not None:  # the last segment's leaving state
            final_state.copy_(walk_final.view(b, segments, H, P, N)[:, -1])
        return y, final_state
    launch(kernels.chunk_scan_fused_fwd, Grids.of(constants, b, H, G, n_chunks).head_p_tile, options, x_ptr=x,
           dt_ptr=dt, log_a_ptr=log_a, B_ptr=B, C_ptr=C, y_ptr=y, D_ptr=D, states_ptr=states,
           initial_state_ptr=initial_state, final_state_ptr=final_state, n_blocks=ceil_div(L, constants["BLOCK_Q"]),
           seq_len=L, n_heads=H, n_chunks=n_chunks)
    return y, final_state


def _segment_entering_states(state_constants: dict, segments: int, pieces: int, x, dt, log_a, B, initial_state,
                             cum):
    """The state entering each of the walk's `segments` segments, (b * segments, H, P, N) fp32: the leaving
    state of each of `pieces` pieces a segment from zero (the split form's state_passing_fwd of `state_constants`
    in LEAVING_STATE_ONLY, the pieces side by side), then segment_entering_fwd's h_{k+1} = exp(total_k) h_k +
    leaving_k over the pieces, h_0 the initial state. cum: the forward's (b, H, c, Q) cumulative decays, or
    None to form them here (decay only)."""
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    kernels = load_kernel_once("ssd_forward.py.jinja", state_constants, HEADER)
    Q, n_pieces = state_constants["Q"], segments * pieces
    sizes = dict(seq_len=L, n_heads=H, n_chunks=L // Q)
    grids = Grids.of(state_constants, b, H, G, L // Q)
    totals = None
    if log_a is not None:
        if cum is None:
            cum = x.new_empty(b, H, L // Q, Q, dtype=torch.float32)
            launch(kernels.chunk_cumsum_fwd, grids.chunk, launch_options(state_constants), log_a_ptr=log_a,
                   cum_ptr=cum, **sizes)
        totals = x.new_empty(b * n_pieces, H, dtype=torch.float32)
    leaving = x.new_empty(b * n_pieces, H, P, N, dtype=torch.float32)
    state_options, state_tiles = launch_options(state_constants, state_passing=True), grids.state_tile[0]
    launch(kernels.state_passing_fwd, (state_tiles, b * n_pieces * H), state_options, x_ptr=x, dt_ptr=dt,
           cum_ptr=cum, B_ptr=B, totals_ptr=totals, final_state_ptr=leaving, n_segments=n_pieces, **sizes)
    entering = x.new_empty(b * segments, H, P, N, dtype=torch.float32)
    launch(kernels.segment_entering_fwd, grids.state_tile, state_options, leaving_ptr=leaving, totals_ptr=totals,
           initial_state_ptr=initial_state, entering_ptr=entering, n_heads=H, n_segments=n_pieces, pieces=pieces)
    return entering


def _backward(constants: dict, x, dt, B, C, initial_state, D, scores, states, cum, dy, final_state_grad,
              segments: int = 1):
    """Run the backward kernels. Returns dx, ddt, dlog_a (both fp32), dB, dC, d(initial_state), dD (fp32);
    None where absent. segments > 1 (a `BackwardLaunch`'s, with the SEGMENTED constants): the state passing
    walks that many segments side by side (`_segment_state_grads`)."""
    kernels = load_kernel_once("ssd_backward.py.jinja", constants, HEADER)
    b, L, H, P = x.shape
    G, N = B.shape[2:]
    n_chunks, options = states.shape[1], launch_options(constants)
    state_options = launch_options(constants, state_passing=True)
    sizes = dict(seq_len=L, n_heads=H, n_chunks=n_chunks)
    grids = Grids.of(constants, b, H, G, n_chunks)

    forms_scores = constants.get("FORMS_SCORES", False)  # the fused forward saved none: formed here
    beside = forms_scores and x.is_cuda  # ... beside the state passing, which does not read them
    # With the state passing in segments (few programs a multiprocessor: small batch, long sequences) the score
    # gradient, which reads none of its outputs either, runs beside it too.
    dscores_beside = beside and segments > 1
    if forms_scores:
        scores = scores_buffer(constants, x, G, n_chunks)
    state_grads = torch.empty_like(states)
    dscores = torch.empty_like(scores)
    dx, dB, dC = torch.empty_like(x), torch.empty_like(B), torch.empty_like(C)
    initial_state_grad = None if initial_state is None else torch.empty_like(initial_state)
    decay_scratch = dict.fromkeys(("row_part_ptr", "column_part_ptr", "entering_share_ptr", "leaving_parts_ptr",
                                   "state_dot_grad_ptr"))
    dlog_a = ddt_parts = dD_parts = None
    p_tiles = constants["P"] // constants["BLOCK_P"]
    share_in_dx = constants["LEAVING_SHARE_IN_DX"]  # which kernel writes leaving_parts, under decay
    if dt is not None:  # one partial sum of ddt per P tile; summed below
        ddt_parts = x.new_empty(b, L, H, p_tiles, dtype=torch.float32)
    if D is not None:  # one partial sum of dD per dx program; summed below
        dD_parts = x.new_empty(b, H, n_chunks, grids.q_p_tile[0], dtype=torch.float32)
    if cum is not None:
        score_tiles = constants["Q"] // constants["SCORE_BLOCK"]
        decay_scratch = dict(
            row_part_ptr=cum.new_empty(b, H, n_chunks, score_tiles, constants["Q"]),
            column_part_ptr=cum.new_empty(b, H, n_chunks, score_tiles, constants["Q"]),
            entering_share_ptr=torch.empty_like(cum),
            # one share per dx program's column slice, or dB's one: the template's count
            leaving_parts_ptr=cum.new_empty(b, H, n_chunks, kernels.LEAVING_PARTS.value, constants["Q"]),
            # one partial <h, G> per state-passing program (the grid's first axis): the template's count
            state_dot_grad_ptr=cum.new_empty(b, H, n_chunks, kernels.STATE_TILES.value))
        dlog_a = x.new_empty(b, L, H, dtype=torch.float32)

    def score_grads():
        launch(kernels.chunk_scan_bwd_dscores, grids.group_block, options, x_ptr=x, dt_ptr=dt, dy_ptr=dy,
               cum_ptr=cum, B_ptr=None if cum is None else B, C_ptr=None if cum is None else C,
               row_part_ptr=decay_scratch["row_part_ptr"],
               column_part_ptr=decay_scratch["column_part_ptr"], dscores_ptr=dscores, **sizes)

    if forms_scores:
        with side_stream(x.device) if beside else contextlib.nullcontext():
            launch(kernels.chunk_scores_bwd, grids.group_block, options, B_ptr=B, C_ptr=C, scores_ptr=scores,
                   **sizes)
            if dscores_beside:
                score_grads()
    state_args = dict(dy_ptr=dy, cum_ptr=cum, states_ptr=None if cum is None else states,
                      state_dot_grad_ptr=decay_scratch["state_dot_grad_ptr"], C_ptr=C, state_grads_ptr=state_grads,
                      initial_state_grad_ptr=initial_state_grad, **sizes)
    if segments > 1:
        arriving = _segment_arriving_grads(kernels, constants, segments, dy, cum, C, final_state_grad)
        launch(kernels.state_passing_bwd, (grids.state_tile[0], b * segments * H), state_options,
               arriving_grad_ptr=arriving, n_segments=segments, **state_args)
    else:
        launch(kernels.state_passing_bwd, grids.state_tile, state_options, final_state_grad_ptr=final_state_grad,
               **state_args)
    if beside:  # chunk_scan_bwd_dx reads the scores, chunk_scan_bwd_dC dscores
        torch.cuda.current_stream(x.device).wait_stream(_SIDE_STREAMS[x.device])
    launch(kernels.chunk_scan_bwd_dx, grids.q_p_tile, options, dy_ptr=dy, cum_ptr=cum,
           leaving_parts_ptr=decay_scratch["leaving_parts_ptr"] if share_in_dx else None, B_ptr=B,
           scores_ptr=scores, state_grads_ptr=state_grads, dx_ptr=dx,
           x_ptr=x if dt is not None or D is not None or (cum is not None and share_in_dx) else None,
           dt_ptr=dt, ddt_parts_ptr=ddt_parts, D_ptr=D, dD_parts_ptr=dD_parts, **sizes)
    if not dscores_beside:
        score_grads()
    launch(kernels.chunk_scan_bwd_dC, grids.group_q_tile, options, dy_ptr=dy, cum_ptr=cum,
           entering_share_ptr=decay_scratch["entering_share_ptr"], B_ptr=B, C_ptr=None if cum is None else C,
           states_ptr=states, dscores_ptr=dscores, dC_ptr=dC, **sizes)
    launch(kernels.chunk_scan_bwd_dB, grids.group_q_tile, options, x_ptr=x, dt_ptr=dt, cum_ptr=cum,
           leaving_parts_ptr=None if share_in_dx else decay_scratch["leaving_parts_ptr"],
           B_ptr=None if share_in_dx or cum is None else B, C_ptr=C, state_grads_ptr=state_grads,
           dscores_ptr=dscores, dB_ptr=dB, **sizes)
    if cum is not None:
        launch(kernels.chunk_cumsum_bwd, grids.chunk, options, cum_ptr=cum, dlog_a_ptr=dlog_a, **decay_scratch,
               **sizes)
    ddt = None if ddt_parts is None else ddt_parts.sum(-1)
    dD = None if dD_parts is None else dD_parts.sum((0, 2, 3))
    return dx, ddt, dlog_a, dB, dC, initial_state_grad, dD


def _segment_arriving_grads(kernels, constants: dict, segments: int, dy, cum, C, final_state_grad):
    """The gradient arriving at each of `segments` segments' ends, (b * segments, H, P, N) fp32: each segment's
    gradient of its entering state from its own outputs (segment_grad_bwd, the segments side by side), then
    segment_arriving_bwd's A_{k-1} = exp(total_k) A_k + that, A_last the final state's gradient (or 0)."""
    b, L, H, P = dy.shape
    N = C.shape[3]
    state_tiles = (P // constants["BLOCK_P"]) * (N // constants["BLOCK_N"])
    state_options = launch_options(constants, state_passing=True)
    starting = dy.new_empty(b * segments, H, P, N, dtype=torch.float32)
    totals = None if cum is None else dy.new_empty(b * segments, H, dtype=torch.float32)
    launch(kernels.segment_grad_bwd, (state_tiles, b * segments * H), state_options, dy_ptr=dy, cum_ptr=cum, C_ptr=C,
           starting_grad_ptr=starting, totals_ptr=totals, seq_len=L, n_heads=H, n_chunks=L // constants["Q"],
           n_segments=segments)
    arriving = torch.empty_like(starting)
    launch(kernels.segment_arriving_bwd, (state_tiles, b * H), state_options, starting_grad_ptr=starting,
           totals_ptr=totals, final_state_grad_ptr=final_state_grad, arriving_grad_ptr=arriving, n_heads=H,
           n_segments=segments)
    return arriving


class SSDChunked(torch.autograd.Function):
    """Autograd over the rendered kernels; saves the inputs, the per-group C . B scores, the states
    entering each chunk and the chunk-local cumulative log decay."""

    @staticmethod
    def forward(ctx, x, dt, log_a, B, C, initial_state, D, launch: ForwardLaunch, backward: BackwardLaunch):
        y, final_state, scores, states, cum = _forward(launch.constants, x, dt, log_a, B, C, initial_state, D,
                                                       launch.segments, launch.segment_state, launch.state_pieces)
        ctx.save_for_backward(x, dt, B, C, initial_state, D, scores, states, cum)
        ctx.constants, ctx.segments = backward
        ctx.log_a_dtype = None if log_a is None else log_a.dtype
        ctx.dt_dtype = None if dt is None else dt.dtype
        return y, final_state

    @staticmethod
    def backward(ctx, dy, final_state_grad):
        x, dt, B, C, initial_state, D, scores, states, cum = ctx.saved_tensors
        final_state_grad = final_state_grad.contiguous() if ctx.constants["RETURN_FINAL_STATE"] else None
        dx, ddt, dlog_a, dB, dC, initial_state_grad, dD = _backward(ctx.constants, x, dt, B, C, initial_state, D,
                                                                    scores, states, cum, dy.contiguous(),
                                                                    final_state_grad, ctx.segments)
        dlog_a = None if dlog_a is None else dlog_a.to(ctx.log_a_dtype)
        ddt = None if ddt is None else ddt.to(ctx.dt_dtype)
        dD = None if dD is None else dD.to(D.dtype)
        return dx, ddt, dlog_a, dB, dC, initial_state_grad, dD, None, None


def scan_sizes(x, log_a, B, chunk_len, has_initial_state, return_final_state, has_dt=False,
               has_D=False) -> ScanSizes:
    """The sizes and flags a call's tensors imply (for calls that bring no plan)."""
    return ScanSizes(x.shape[3], B.shape[3], chunk_len, x.shape[2], B.shape[2], log_a is not None, has_dt, has_D,
                     has_initial_state, return_final_state)


def operand_of(x, B) -> str:
    """The plan's operand key for these inputs: their dtype, or fp32 when they differ."""
    return OPERANDS[x.dtype] if x.dtype == B.dtype else "fp32"


def _plan_for(sizes: ScanSizes, device: torch.device, tuning: SSDTuning | None) -> ScanPlan:
    target = Target.of(device)
    return _plan_on(sizes, target.multiprocessors, target.gpu, tuning)


@functools.lru_cache(maxsize=256)
def _plan_on(sizes: ScanSizes, sms: int | None, gpu: str, tuning: SSDTuning | None) -> ScanPlan:
    return plan_scan(sizes, sms, tuning, gpu)


def plan_for_call(x, log_a, B, chunk_len, has_initial_state, return_final_state, tuning: SSDTuning | None = None,
                  has_dt: bool = False, has_D: bool = False) -> ScanPlan:
    """The plan of a call made without one: the same `plan_scan` a layer's plan comes from, for the sizes the
    tensors imply and x's device (remembered per process)."""
    sizes = scan_sizes(x, log_a, B, chunk_len, has_initial_state, return_final_state, has_dt, has_D)
    return _plan_for(sizes, x.device, tuning)


def call_constants(x, log_a, B, chunk_len, has_initial_state, return_final_state, tuning: SSDTuning,
                   has_dt: bool = False, has_D: bool = False, needs_grad: bool = True) -> tuple[dict, dict]:
    """The forward's and the backward's constants a call with these tensors runs under `tuning` (its form
    picked for x's batch on x's device; `call_launch` adds the segments of a segmented walk and backward).
    The dicts are shared: read them, never change them."""
    launch, backward = call_launch(x, log_a, B, chunk_len, has_initial_state, return_final_state, tuning, has_dt,
                                   has_D, needs_grad)
    return launch.constants, backward.constants


def call_launch(x, log_a, B, chunk_len, has_initial_state, return_final_state, tuning: SSDTuning,
                has_dt: bool = False, has_D: bool = False,
                needs_grad: bool = True) -> tuple[ForwardLaunch, BackwardLaunch]:
    """`call_constants` with the forward's whole `ForwardLaunch` and the backward's `BackwardLaunch`."""
    plan = plan_for_call(x, log_a, B, chunk_len, has_initial_state, return_final_state, tuning, has_dt, has_D)
    return planned_launch(plan, x, B, needs_grad)


def planned_launch(plan: ScanPlan, x, B, needs_grad: bool) -> tuple[ForwardLaunch, BackwardLaunch]:
    """The forward's and the backward's launches (segments picked for x's batch and length) of the variant
    `plan` gives these inputs (without gradients, the training variant's backward: an op's key carries one,
    unused)."""
    launch, backward = _variant_launch(plan, x, B, needs_grad)
    return launch, backward or _variant_launch(plan, x, B, True)[1]


def _variant_launch(plan: ScanPlan, x, B, needs_grad: bool) -> tuple[ForwardLaunch, BackwardLaunch | None]:
    """The forward's and the backward's launches (segments picked for x's batch and length; no backward
    without gradients) of the variant the plan gives these inputs."""
    variant = plan.select(operand_of(x, B), needs_grad, x.shape[0])
    return variant.forward_launch(*x.shape[:2]), variant.backward_launch(*x.shape[:2])


def default_tuning(x, B, needs_grad: bool = True) -> SSDTuning:
    """The measured tuning (tunings.json) the plan gives these inputs' types, (P, N) and batch."""
    target = Target.of(x.device)
    return tuning_for_batch(scan_sizes(x, None, B, 64, False, False), operand_of(x, B), needs_grad, x.shape[0],
                            target.multiprocessors, target.gpu)


def ssd_chunked_triton(x, log_a, B, C, chunk_len, initial_state=None, return_final_state=True, *,
                       dt=None, D=None, tuning: SSDTuning | None = None, plan: ScanPlan | None = None):
    """The SSD chunked scan on the Triton kernels: y (b, L, H, P) and the final state (b, H, P, N),
    or None when return_final_state is False. Shapes and semantics as `reference.ssd_chunked`.

    log_a=None means no decay (a = 1, the `none` kind): the kernels are rendered without decay
    code. A `fixed` decay (one per head) is passed as log_a broadcast to (b, L, H). Inputs may be
    fp32, bf16 or fp16; the kernels accumulate in fp32, and y has x's dtype.

    plan: the layer's `ScanPlan` (kernels/semiseparable/plan.py), which holds every constant; the launcher only
    picks its variant for the inputs' dtype, whether a backward follows and the batch. Without one, the plan
    for these tensors' sizes on their device, with `tuning` (None: the measured tunings) for every variant.

    dt (b, L, H), optional: the scan's input is then x * dt[..., None] (Mamba-2's discretisation),
    applied inside the kernels, which saves a pass over x and its gradient; dt gets a gradient.
    D (H,), optional: Mamba-2's skip, y += D[h] x (x before dt), fused into the output and dx kernels.
    """
    check_inputs(x, log_a, B, C, chunk_len, initial_state, dt, D)
    flags = (initial_state is not None, return_final_state)
    inputs = (x, dt, log_a, B, C, initial_state, D)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    if torch.compiler.is_compiling():  # torch.compile, torch.export: the custom ops (ops.py), one a direction
        from composer.kernels.semiseparable.ops import ssd_chunked_op
        return ssd_chunked_op(x, log_a, B, C, chunk_len, initial_state, return_final_state, dt, D, tuning,
                              needs_grad, plan)
    sizes = scan_sizes(x, log_a, B, chunk_len, *flags, has_dt=dt is not None, has_D=D is not None)
    if plan is None:
        plan = _plan_for(sizes, x.device, tuning)
    elif plan.sizes != sizes:
        raise ValueError(f"this call's sizes {sizes} are not the ones its plan was made for: {plan.sizes}")
    launch, backward = _variant_launch(plan, x, B, needs_grad)
    contiguous = [None if t is None else t.contiguous() for t in inputs]
    if not needs_grad:  # inference: nothing to save, no autograd node
        y, final_state = _forward(launch.constants, *contiguous, launch.segments, launch.segment_state,
                                  launch.state_pieces)[:2]
        return y, final_state
    return SSDChunked.apply(*contiguous, launch, backward)
