"""Chunked gated linear attention on its generated Triton kernels, with the signature and semantics of
`reference.gla_chunked` (the chunk length comes from the plan).

The forward renders gla_forward.py.jinja for the call's constants (kernels/gla/plan.py) and launches its three
kernels: the walk over the chunks that sums the log decays within each chunk and gives the state entering
each one (and the final state), each chunk's scores by sub-chunks, and the outputs. The backward
(gla_backward.py.jinja) walks the chunks in reverse for the state's gradient, then takes the scores' gradient,
dv, the state terms of dq and dk per chunk, and dq, dk with dlog_a by sub-chunks. The templates' headers
define the notation (b, L, H, K, V, Q, c, g, A). Under torch.compile and torch.export the same functions run
inside custom ops (ops.py).
"""

from __future__ import annotations

import torch

from composer.codegen.render import load_kernel_once
from composer.kernels.device import ceil_div
from composer.kernels.gla.plan import BACKWARD_TEMPLATE, FORWARD_TEMPLATE, GLAPlan, GLASizes, fits, plan_gla

PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# The dtype of the states the forward stores and the backward's dh, per operand type: bf16 operands store bf16
# (a product reads them as bf16 operands anyway; half the bytes), fp16 ones fp32 (a state past 65504 would be
# inf in fp16), fp32 ones fp32.
STATE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float32}
HEADER = {"family": "gla", "rendered_for": "the chunked GLA launcher"}


def plan_for(q, v, chunk: int) -> GLAPlan:
    """A plan from the tensors' sizes, for a call made without a layer's plan (tests, direct use)."""
    return plan_gla(GLASizes(q.shape[-1], v.shape[-1], chunk, q.shape[2]))


def check_inputs(q, k, v, log_a, initial_state, plan: GLAPlan) -> None:
    """Raise ValueError for what the kernels cannot take: a wrong shape reads out of bounds there."""
    if q.dim() != 4 or q.shape != k.shape or q.shape != log_a.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"expected q, k, log_a (b, L, H, K) and v (b, L, H, V); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(log_a.shape)}, {tuple(v.shape)}")
    b, L, H, K = q.shape
    V = v.shape[-1]
    sizes = plan.sizes
    if (K, V, H) != (sizes.key_dim, sizes.value_dim, sizes.heads) or L == 0:
        raise ValueError(f"the plan is for K={sizes.key_dim}, V={sizes.value_dim}, H={sizes.heads}; the inputs "
                         f"have K={K}, V={V}, H={H}, L={L}")
    reason = fits(K, V, sizes.chunk)
    if reason is not None:
        raise ValueError(reason)
    if initial_state is not None and initial_state.shape != (b, H, K, V):
        raise ValueError(f"initial_state must be (b, H, K, V) = {(b, H, K, V)}; got {tuple(initial_state.shape)}")
    for t in (q, k, v, log_a, initial_state):
        if t is not None and (t.dtype not in PRECISIONS or t.device != q.device):
            raise ValueError(f"inputs must be fp32/bf16/fp16 on {q.device}; got {t.dtype} on {t.device}")


def operand_of(q, k, v) -> str:
    """Mixed inputs multiply as fp32."""
    dtypes = {q.dtype, k.dtype, v.dtype}
    return PRECISIONS[v.dtype] if len(dtypes) == 1 else "fp32"


def gla_forward(q, k, v, log_a, initial_state, plan: GLAPlan):
    """(o (b, L, H, V) in v's dtype, the final state fp32, g fp32, states (b, H, c, K, V) in the operand
    type, A (b, H, c, Q, Q) fp32)."""
    b, L, H, K = q.shape
    V = v.shape[-1]
    operand = operand_of(q, k, v)
    constants = plan.forward_constants(operand, initial_state is not None)
    kernels = load_kernel_once(FORWARD_TEMPLATE, constants, HEADER)
    Q, SUB, BK, BV = (constants[name] for name in ("Q", "SUB", "BK", "BV"))
    options = dict(num_warps=constants["NUM_WARPS"], num_stages=constants["NUM_STAGES"])
    n_chunks = ceil_div(L, Q)
    f32 = dict(device=q.device, dtype=torch.float32)
    g = torch.empty(b, L, H, K, **f32)
    states = torch.empty(b, H, n_chunks, K, V, device=q.device, dtype=STATE_DTYPES[operand])
    final = torch.empty(b, H, K, V, **f32)
    initial = (initial_state,) if initial_state is not None else ()
    kernels.gla_states_fwd[(K // BK, V // BV, b * H)](k, v, log_a, g, *initial, states, final, L, H, **options)
    A = torch.empty(b, H, n_chunks, Q, Q, **f32)
    kernels.gla_scores_fwd[(Q // SUB, n_chunks, b * H)](q, k, g, A, L, H, **options)
    o = torch.empty_like(v)
    kernels.gla_output_fwd[(V // BV, n_chunks, b * H)](q, v, g, states, A, o, L, H, **options)
    return o, final, g, states, A


def gla_backward(do, dfinal, q, k, v, g, states, A, has_initial_state: bool, plan: GLAPlan):
    """(dq, dk, dv in their inputs' dtypes, dlog_a fp32, d initial state fp32 or None)."""
    b, L, H, K = q.shape
    V = v.shape[-1]
    constants = plan.backward_constants(operand_of(q, k, v), has_initial_state, dfinal is not None)
    kernels = load_kernel_once(BACKWARD_TEMPLATE, constants, HEADER)
    Q, BK, BV = (constants[name] for name in ("Q", "BK", "BV"))
    options = dict(num_warps=constants["NUM_WARPS"], num_stages=constants["NUM_STAGES"])
    n_chunks = states.shape[2]
    f32 = dict(device=q.device, dtype=torch.float32)
    dstates = torch.empty(b, H, n_chunks, K, V, device=q.device, dtype=states.dtype)
    dstate0 = torch.empty(b, H, K, V, **f32) if has_initial_state else None
    kernels.gla_dstates_bwd[(K // BK, V // BV, b * H)](
        q, g, do, *((dfinal,) if dfinal is not None else ()), dstates, *((dstate0,) if has_initial_state else ()),
        L, H, **options)
    dA = torch.empty(b, H, n_chunks, Q, Q, **f32)
    kernels.gla_dscores_bwd[(n_chunks, b * H)](v, do, dA, L, H, **options)
    dv = torch.empty_like(v)
    kernels.gla_dv_bwd[(V // BV, n_chunks, b * H)](k, g, do, A, dstates, dv, L, H, **options)
    dq_state, dk_state = torch.empty(b, L, H, K, **f32), torch.empty(b, L, H, K, **f32)
    share = torch.empty(b, L, H, K, **f32)
    kernels.gla_dqk_states_bwd[(K // BK, n_chunks, b * H)](k, v, g, do, states, dstates, dq_state, dk_state, share,
                                                          L, H, **options)
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dlog_a = torch.empty(b, L, H, K, **f32)
    kernels.gla_dqk_bwd[(K // BK, n_chunks, b * H)](q, k, g, dA, dq_state, dk_state, share, dq, dk, dlog_a, L, H,
                                                   **options)
    return dq, dk, dv, dlog_a, dstate0


class GLAChunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, log_a, initial_state, plan):
        o, final_state, g, states, A = gla_forward(q, k, v, log_a, initial_state, plan)
        ctx.set_materialize_grads(False)  # an unused final state sends no gradient: the backward takes none
        if any(ctx.needs_input_grad[:5]):
            ctx.save_for_backward(q, k, v, g, states, A)
            ctx.plan, ctx.has_initial_state = plan, initial_state is not None
            ctx.dtypes = (log_a.dtype, None if initial_state is None else initial_state.dtype)
        return o, final_state

    @staticmethod
    def backward(ctx, do, dfinal):
        q, k, v, g, states, A = ctx.saved_tensors
        do = torch.zeros_like(v) if do is None else do.contiguous()
        dfinal = None if dfinal is None else dfinal.float().contiguous()
        dq, dk, dv, dlog_a, dstate0 = gla_backward(do, dfinal, q, k, v, g, states, A,
                                                   ctx.has_initial_state, ctx.plan)
        log_a_dtype, state_dtype = ctx.dtypes
        return dq, dk, dv, dlog_a.to(log_a_dtype), None if dstate0 is None else dstate0.to(state_dtype), None


def gla_chunked_triton(q, k, v, log_a, chunk: int = 64, initial_state=None, plan: GLAPlan | None = None):
    """As `reference.gla_chunked`: (o (b, L, H, V) in v's dtype, final state (b, H, K, V) fp32).
    q, k, log_a (b, L, H, K); v (b, L, H, V); initial_state (b, H, K, V) or None; plan: the layer's (None:
    planned from the sizes, with `chunk`)."""
    q, k, v, log_a = (t.contiguous() for t in (q, k, v, log_a))
    initial_state = None if initial_state is None else initial_state.contiguous()
    if torch.compiler.is_compiling():  # torch.compile, torch.export: the custom ops (ops.py)
        from composer.kernels.gla.ops import gla_chunked_op
        return gla_chunked_op(q, k, v, log_a, chunk, initial_state, plan)
    plan = plan or plan_for(q, v, chunk)
    check_inputs(q, k, v, log_a, initial_state, plan)
    return GLAChunked.apply(q, k, v, log_a, initial_state, plan)
