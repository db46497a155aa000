"""GLA's decoding step on its generated kernel (gla_step.py.jinja), with the semantics of `reference.gla_step`
but updating the state in place: one read and one write of it a step."""

from __future__ import annotations

import torch

from composer.codegen.render import load_kernel_once
from composer.kernels.gla.chunk import HEADER, plan_for
from composer.kernels.gla.plan import STEP_TEMPLATE, GLAPlan


def gla_step_launch(state, q_t, k_t, v_t, log_a_t, constants: dict):
    """o_t (b, H, V) in v_t's dtype; `state` (b, H, K, V), contiguous, takes the new state."""
    b, H, _, V = state.shape
    kernel = load_kernel_once(STEP_TEMPLATE, constants, HEADER).gla_step_fwd
    o_t = torch.empty_like(v_t)
    kernel[(V // constants["BV"], b * H)](state, q_t, k_t, v_t, log_a_t, o_t, H, num_warps=constants["NUM_WARPS"])
    return o_t


def gla_step_triton(state, q_t, k_t, v_t, log_a_t, plan: GLAPlan | None = None):
    """One step: q_t, k_t, log_a_t (b, H, K), v_t (b, H, V); `state` (b, H, K, V) contiguous, updated in place.
    Returns o_t. plan: the layer's (None: from the sizes)."""
    if not state.is_contiguous() or state.shape != (*k_t.shape, v_t.shape[-1]):
        raise ValueError(f"state must be contiguous (b, H, K, V) = {(*k_t.shape, v_t.shape[-1])}; got "
                         f"{tuple(state.shape)}")
    q_t, k_t, v_t, log_a_t = (t.contiguous() for t in (q_t, k_t, v_t, log_a_t))
    if torch.compiler.is_compiling():  # torch.compile, torch.export: the custom op (ops.py)
        from composer.kernels.gla.ops import gla_step_op
        return gla_step_op(state, q_t, k_t, v_t, log_a_t, plan)
    plan = plan or plan_for(q_t[:, None], v_t[:, None], 16)
    return gla_step_launch(state, q_t, k_t, v_t, log_a_t, plan.step_constants())
