"""Triton path of one SSD decoding step, with the semantics of `reference.ssd_step` (forward only), and the
fused Mamba-2 decoding step around it (short conv, dt, decay, skip: `ssd_decode_step_triton`).

Rendered from codegen/templates/ssd_step.py.jinja for (head dim, state size, heads per group,
decay kind, tile), and from ssd_decode_step.py.jinja for the layer's sizes (decode_plan.py), and loaded once
per process. Decoding is memory-bound: each program streams BLOCK_P rows of one head's state in and out once.
"""

from __future__ import annotations

import os

import torch
import triton

from composer.codegen.render import load_kernel_once
from composer.kernels.semiseparable.chunk import FLOAT_DTYPES, launch
from composer.kernels.semiseparable.decode_plan import DECODE_TEMPLATE, gemm_tiles
from composer.kernels.semiseparable.plan import ScanSizes
from composer.kernels.semiseparable.plan import step_constants as plan_step_constants
from composer.kernels.semiseparable.tuning import SSDTuning

HEADER = {"family": "semiseparable", "rendered_for": "the SSD decoding-step launcher"}


def check_step_inputs(state, x_t, log_a_t, B_t, C_t) -> None:
    """Raise ValueError for what the kernel cannot take: a wrong shape reads out of bounds there."""
    if state.dim() != 4 or B_t.dim() != 3 or B_t.shape != C_t.shape:
        raise ValueError(f"expected state (b, H, P, N) and B_t, C_t (b, G, N); got {tuple(state.shape)}, "
                         f"{tuple(B_t.shape)}, {tuple(C_t.shape)}")
    b, H, P, N = state.shape
    G = B_t.shape[1]
    if x_t.shape != (b, H, P) or B_t.shape != (b, G, N) or H % G:
        raise ValueError(f"x_t must be (b, H, P) = {(b, H, P)} and B_t, C_t (b, G, N) with H a multiple of G")
    if log_a_t is not None and log_a_t.shape != (b, H):
        raise ValueError(f"log_a_t must be (b, H) = {(b, H)}; got {tuple(log_a_t.shape)}")
    for name, size in (("head dim P", P), ("state size N", N)):
        if size & (size - 1):
            raise ValueError(f"{name} = {size} must be a power of two for the Triton kernel")
    for t in (state, x_t, log_a_t, B_t, C_t):
        if t is not None and (t.dtype not in FLOAT_DTYPES or t.device != state.device):
            raise ValueError(f"inputs must be fp32/bf16/fp16 on {state.device}; got {t.dtype} on {t.device}")


def step_constants(state, B_t, decays: bool, tuning: SSDTuning) -> dict:
    """The step kernel's template constants, for the sizes of these tensors (plan.step_constants)."""
    _, H, P, N = state.shape
    return plan_step_constants(ScanSizes(P, N, 1, H, B_t.shape[1], decays), tuning)


def _step(constants: dict, state, x_t, log_a_t, B_t, C_t):
    """Launch the step kernel on contiguous inputs: y_t and the new state."""
    kernels = load_kernel_once("ssd_step.py.jinja", constants, HEADER)
    b, H, P, _ = state.shape
    new_state = torch.empty_like(state)
    y_t = torch.empty_like(x_t)
    launch(kernels.ssd_step_fwd, (b * H, P // constants["BLOCK_P"]), dict(num_warps=constants["NUM_WARPS"]),
           state_ptr=state, x_ptr=x_t, log_a_ptr=log_a_t, B_ptr=B_t, C_ptr=C_t, new_state_ptr=new_state, y_ptr=y_t,
           n_heads=H)
    return y_t, new_state


def ssd_step_triton(state, x_t, log_a_t, B_t, C_t, *, tuning: SSDTuning = SSDTuning(), plan=None):
    """One step: returns y_t (b, H, P) in x_t's dtype and new_state (b, H, P, N) in state's dtype.

    log_a_t=None means no decay (a_t = 1); the kernel is then rendered without decay code.
    plan: the layer's prefill `ScanPlan`, whose sizes give the constants (None: the tensors' sizes).
    """
    check_step_inputs(state, x_t, log_a_t, B_t, C_t)
    if torch.compiler.is_compiling():  # torch.compile, torch.export: the custom op (ops.py)
        from composer.kernels.semiseparable.ops import ssd_step_op
        return ssd_step_op(state, x_t, log_a_t, B_t, C_t, tuning, plan)
    if plan is None:
        constants = step_constants(state, B_t, log_a_t is not None, tuning)
    else:
        constants = plan_step_constants(plan.sizes, tuning)
    state, x_t, B_t, C_t = (t.contiguous() for t in (state, x_t, B_t, C_t))
    log_a_t = None if log_a_t is None else log_a_t.contiguous()
    return _step(constants, state, x_t, log_a_t, B_t, C_t)


DECODE_HEADER = {"family": "semiseparable", "rendered_for": "the fused Mamba-2 decoding-step launcher"}


def ssd_decode_step_triton(constants: dict, u, conv_state, conv_weight, conv_bias, state, dt_bias=None, A_log=None,
                           D=None):
    """A Mamba-2 layer's decoding step after its in_proj, in two kernels (ssd_decode_step.py.jinja): the short
    conv from `conv_state` (b, channels, conv - 1), then dt's softplus, the decay, the state update and D's skip.
    u (b, in_proj width) in the activations' dtype; conv_weight (channels, 1, conv) and conv_bias (channels,)
    the layer's conv1d; state (b, H, P, N). Both states are updated in place. Returns y (b, H P) in u's dtype,
    before the gate and the output norm. constants: `decode_plan.decode_constants` for the layer."""
    b, channels = u.shape[0], constants["CHANNELS"]
    heads, head_dim = constants["HEADS_PER_GROUP"] * constants["GROUPS"], constants["P"]
    if (u.shape != (b, constants["U_WIDTH"]) or conv_state.shape != (b, channels, constants["WIDTH"] - 1)
            or state.shape != (b, heads, head_dim, constants["N"])):
        raise ValueError(f"the decoding step's constants do not fit u {tuple(u.shape)}, conv state "
                         f"{tuple(conv_state.shape)} and state {tuple(state.shape)}")
    if not (u.is_contiguous() and conv_state.is_contiguous() and state.is_contiguous()):
        raise ValueError("u and both states must be contiguous: the kernels update the states in place")
    kernels = load_kernel_once(DECODE_TEMPLATE, constants, DECODE_HEADER)
    options = dict(num_warps=constants["NUM_WARPS"])
    xbc = torch.empty(b, channels, dtype=u.dtype, device=u.device)
    launch(kernels.conv_step_fwd, (b, triton.cdiv(channels, constants["BLOCK_C"])), options, u_ptr=u,
           conv_state_ptr=conv_state, weight_ptr=conv_weight.contiguous(), bias_ptr=conv_bias, xbc_ptr=xbc)
    return _decode_step(kernels, constants, xbc, u, dt_bias, A_log, D, state)


def _decode_step(kernels, constants: dict, xbc, u, dt_bias, A_log, D, state, pdl: bool = False):
    """Launch ssd_decode_step_fwd after the conv: dt from u (decay data), the state update in place, and
    y (b, H P) in xbc's dtype. pdl: launched with programmatic dependent launch (`dependent_launch`)."""
    b, heads, head_dim = state.shape[0], state.shape[1], constants["P"]
    y = torch.empty(b, heads * head_dim, dtype=xbc.dtype, device=xbc.device)
    data = constants["DECAY"] == "data"
    launch(kernels.ssd_decode_step_fwd, (b * heads, head_dim // constants["BLOCK_P"]),
           _launch_options(constants["NUM_WARPS"], pdl), xbc_ptr=xbc, u_ptr=u if data else None,
           dt_bias_ptr=dt_bias if data else None, A_log_ptr=A_log if constants["DECAY"] != "none" else None,
           D_ptr=D if constants["HAS_D"] else None, state_ptr=state, y_ptr=y, PDL=pdl)
    return y


def dependent_launch(device: torch.device) -> bool:
    """Whether the three-kernel step launches with programmatic dependent launch: with COMPOSER_DECODE_PDL=1, on
    a CUDA GPU of compute capability 9 (Hopper) or later. Each kernel then starts while the one before it
    finishes and loads its weights meanwhile (ssd_decode_step.py.jinja says what waits); at batch 1 a layer's
    three kernels are latency-bound, so the overlap looked like most of what a step could still save. Off by
    default: on an H100 (1e75f82, benchmarks/results/decode_h100_2026-12-06_1e75f82_pdl.log) Mamba-2 130M's step
    took 332.1 us with it against 331.4 us without, at batch 1."""
    return (device.type == "cuda" and os.environ.get("COMPOSER_DECODE_PDL", "0") == "1"
            and torch.cuda.get_device_capability(device)[0] >= 9)


def _launch_options(warps: int, pdl: bool) -> dict:
    return dict(num_warps=warps, launch_pdl=True) if pdl else dict(num_warps=warps)


def ssd_decode_layer_triton(constants: dict, hidden, in_proj_weight, conv_state, conv_weight, conv_bias, state,
                            out_proj_weight, *, pre_norm=None, dt_bias=None, A_log=None, D=None, out_norm=None,
                            residual=None):
    """A Mamba-2 block's whole decoding step in three kernels: in_proj_conv_fwd (the block's RMSNorm when
    `pre_norm` = (weight, eps) is given, in_proj, the short conv and its state), ssd_decode_step_fwd, and
    out_proj_fwd (the gate, the output RMSNorm when `out_norm` = (weight, eps), out_proj, and `residual`'s add).
    hidden (b, d_model), residual (b, d_model) or None; in_proj and out_proj without biases; both states are
    updated in place. Returns out (b, d_model) in hidden's dtype: residual + out_proj(...) with a residual."""
    b, d_model = hidden.shape
    channels, heads = constants["CHANNELS"], constants["HEADS_PER_GROUP"] * constants["GROUPS"]
    d_inner = heads * constants["P"]
    if (conv_state.shape != (b, channels, constants["WIDTH"] - 1) or state.shape != (b, heads, constants["P"],
                                                                                      constants["N"])
            or in_proj_weight.shape != (constants["U_WIDTH"], d_model) or out_proj_weight.shape != (d_model, d_inner)):
        raise ValueError(f"the decoding step's constants do not fit hidden {tuple(hidden.shape)}, conv state "
                         f"{tuple(conv_state.shape)}, state {tuple(state.shape)} and the projections "
                         f"{tuple(in_proj_weight.shape)}, {tuple(out_proj_weight.shape)}")
    if not (conv_state.is_contiguous() and state.is_contiguous()):
        raise ValueError("both states must be contiguous: the kernels update them in place")
    kernels = load_kernel_once(DECODE_TEMPLATE, constants, DECODE_HEADER)
    hidden = hidden.contiguous()
    u = torch.empty(b, constants["U_WIDTH"], dtype=hidden.dtype, device=hidden.device)
    xbc = torch.empty(b, channels, dtype=hidden.dtype, device=hidden.device)
    pdl = dependent_launch(hidden.device)
    tiles = gemm_tiles(b, d_model)
    kernels.in_proj_conv_fwd[(triton.cdiv(b, tiles.block_m), triton.cdiv(constants["U_WIDTH"], tiles.block_n))](
        hidden, None if pre_norm is None else pre_norm[0], in_proj_weight.contiguous(), conv_state,
        conv_weight.contiguous(), conv_bias, u, xbc, b, 0.0 if pre_norm is None else pre_norm[1], D_MODEL=d_model,
        BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k, PRE_NORM=pre_norm is not None,
        PDL=pdl, **_launch_options(tiles.warps, pdl))
    y = _decode_step(kernels, constants, xbc, u, dt_bias, A_log, D, state, pdl)
    out = torch.empty(b, d_model, dtype=hidden.dtype, device=hidden.device)
    tiles = gemm_tiles(b, d_inner)
    kernels.out_proj_fwd[(triton.cdiv(b, tiles.block_m), triton.cdiv(d_model, tiles.block_n))](
        y, u, None if out_norm is None else out_norm[0], out_proj_weight.contiguous(),
        None if residual is None else residual.contiguous(), out, b, 0.0 if out_norm is None else out_norm[1],
        D_MODEL=d_model, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k,
        OUT_NORM=out_norm is not None, RESIDUAL=residual is not None, PDL=pdl,
        **_launch_options(tiles.warps, pdl))
    return out
