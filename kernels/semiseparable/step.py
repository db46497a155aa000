"""Triton path of one SSD decoding step, with the semantics of `reference.ssd_step` (forward only).

Rendered from codegen/templates/ssd_step.py.jinja for (head dim, state size, heads per group,
decay kind, tile) and loaded once per process. Decoding is memory-bound: each program streams
BLOCK_P rows of one head's state in and out once.
"""

from __future__ import annotations

import torch

from composer.codegen.render import load_kernel_once
from composer.kernels.semiseparable.chunk import FLOAT_DTYPES, launch
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
