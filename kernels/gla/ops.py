"""Chunked GLA as PyTorch custom ops, which torch.compile(fullgraph=True) and torch.export see whole.

`NAMESPACE::gla_forward` runs the forward kernels and returns o, the final state and what the backward reads
(g, the states, the scores); its autograd formula calls `NAMESPACE::gla_backward`. `NAMESPACE::gla_step` is one
decoding step, updating the state in place (forward only). Both are opaque to the
compiler: the launch path (module loading, grids) runs inside them as plain Python, and their fake kernels give
the outputs' shapes from the plan alone. A call's plan travels as its `key` (`plan.GLAPlan.key`, a string an
op's schema can carry), parsed back in any process. Custom ops return no None: the initial state's gradient of
a call without one is an empty tensor here and None again in the autograd formula.

Eager calls do not come here (the dispatcher adds host time a call): `chunk.gla_chunked_triton` runs
`GLAChunked` directly and calls `gla_chunked_op` under torch.compile and torch.export.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from composer.kernels.device import ceil_div
from composer.kernels.gla.chunk import STATE_DTYPES, check_inputs, gla_backward, gla_forward, operand_of
from composer.kernels.gla.plan import GLAPlan, GLASizes, plan_gla, plan_of_key
from composer.kernels.gla.step import gla_step_launch
from composer.kernels.op_namespace import NAMESPACE

OPS = getattr(torch.ops, NAMESPACE)


@functools.lru_cache(maxsize=None)
def _plan(key: str) -> GLAPlan:
    return plan_of_key(key)


@torch.library.custom_op(f"{NAMESPACE}::gla_forward", mutates_args=())
def gla_forward_op(q: Tensor, k: Tensor, v: Tensor, log_a: Tensor, initial_state: Optional[Tensor],
                   key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """o, the final state, g, the states and the scores, as `chunk.gla_forward`."""
    plan = _plan(key)
    check_inputs(q, k, v, log_a, initial_state, plan)
    return gla_forward(q, k, v, log_a, initial_state, plan)


@gla_forward_op.register_fake
def _(q, k, v, log_a, initial_state, key):
    b, L, H, K = q.shape
    V, Q = v.shape[-1], _plan(key).sizes.chunk
    n_chunks = ceil_div(L, Q)
    f32 = dict(dtype=torch.float32)
    return (torch.empty_like(v), q.new_empty(b, H, K, V, **f32), q.new_empty(b, L, H, K, **f32),
            q.new_empty(b, H, n_chunks, K, V, dtype=STATE_DTYPES[operand_of(q, k, v)]),
            q.new_empty(b, H, n_chunks, Q, Q, **f32))


@torch.library.custom_op(f"{NAMESPACE}::gla_backward", mutates_args=())
def gla_backward_op(do: Tensor, dfinal: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor, g: Tensor,
                    states: Tensor, A: Tensor, has_initial_state: bool,
                    key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dq, dk, dv, dlog_a (fp32) and the initial state's gradient (empty without one), as `chunk.gla_backward`."""
    dq, dk, dv, dlog_a, dstate0 = gla_backward(do, dfinal, q, k, v, g, states, A, has_initial_state, _plan(key))
    return dq, dk, dv, dlog_a, q.new_empty(0, dtype=torch.float32) if dstate0 is None else dstate0


@gla_backward_op.register_fake
def _(do, dfinal, q, k, v, g, states, A, has_initial_state, key):
    b, _, H, K = q.shape
    dstate0 = q.new_empty(b, H, K, v.shape[-1], dtype=torch.float32) if has_initial_state else \
        q.new_empty(0, dtype=torch.float32)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g), dstate0


def _setup_context(ctx, inputs, output):
    q, k, v, log_a, initial_state, key = inputs
    _, _, g, states, A = output
    ctx.save_for_backward(q, k, v, g, states, A)
    ctx.key, ctx.has_initial_state = key, initial_state is not None
    ctx.dtypes = (log_a.dtype, None if initial_state is None else initial_state.dtype)


def _backward_formula(ctx, do, dfinal, *unused_grads):
    q, k, v, g, states, A = ctx.saved_tensors
    do = torch.zeros_like(v) if do is None else do.contiguous()
    dfinal = None if dfinal is None else dfinal.float().contiguous()
    dq, dk, dv, dlog_a, dstate0 = OPS.gla_backward(do, dfinal, q, k, v, g, states, A, ctx.has_initial_state,
                                                   ctx.key)
    log_a_dtype, state_dtype = ctx.dtypes
    return (dq, dk, dv, dlog_a.to(log_a_dtype), dstate0.to(state_dtype) if ctx.has_initial_state else None, None)


gla_forward_op.register_autograd(_backward_formula, setup_context=_setup_context)


@torch._dynamo.assume_constant_result
def traced_plan_key(key_dim: int, value_dim: int, chunk: int, heads: int) -> str:
    """The key of the plan for these sizes (a call made without a layer's plan), run once while tracing."""
    return plan_gla(GLASizes(key_dim, value_dim, chunk, heads)).key


def gla_chunked_op(q, k, v, log_a, chunk: int, initial_state, plan: GLAPlan | None):
    """`chunk.gla_chunked_triton` through the custom ops: (o, the final state)."""
    key = plan.key if plan is not None else traced_plan_key(q.shape[-1], v.shape[-1], chunk, q.shape[2])
    o, final_state, *_ = OPS.gla_forward(q, k, v, log_a, initial_state, key)
    return o, final_state


@torch.library.custom_op(f"{NAMESPACE}::gla_step", mutates_args=("state",))
def gla_step(state: Tensor, q_t: Tensor, k_t: Tensor, v_t: Tensor, log_a_t: Tensor, key: str) -> Tensor:
    """o_t, with `state` updated in place, as `step.gla_step_triton` (forward only)."""
    return gla_step_launch(state, q_t, k_t, v_t, log_a_t, _plan(key).step_constants())


@gla_step.register_fake
def _(state, q_t, k_t, v_t, log_a_t, key):
    return torch.empty_like(v_t)


def gla_step_op(state, q_t, k_t, v_t, log_a_t, plan: GLAPlan | None):
    """`step.gla_step_triton` through the custom op; the batch may be dynamic (no step constant depends on it)."""
    key = plan.key if plan is not None else traced_plan_key(k_t.shape[-1], v_t.shape[-1], 16, k_t.shape[1])
    return OPS.gla_step(state, q_t, k_t, v_t, log_a_t, key)
