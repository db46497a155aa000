"""The chunked delta rule on its generated Triton kernels, with the signature and semantics of
`reference.delta_rule_chunked` (the chunk length comes from the plan).

The forward renders delta_forward.py.jinja for the call's constants (kernels/delta/plan.py) and
launches its four kernels: per chunk, T = (I + A)^-1, then the WY/UT factors w and u; then,
sequential over the chunks of each head, the written values and the state entering each chunk; then,
every chunk at once, the outputs. The backward
(delta_backward.py.jinja) walks the chunks in reverse for the state's gradient, then takes every
input's gradient per chunk.
"""

from __future__ import annotations

import torch
import triton

from composer.codegen.render import load_kernel_once
from composer.kernels.delta.plan import (BACKWARD_TEMPLATE, FORWARD_TEMPLATE, STEP_TEMPLATE, DeltaPlan, DeltaSizes,
                                         plan_delta)

PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def plan_for(q, v, log_gate, chunk: int) -> DeltaPlan:
    """A plan from the tensors' sizes, for a call made without a layer's plan (tests, direct use)."""
    return plan_delta(DeltaSizes(q.shape[-1], v.shape[-1], chunk, v.shape[2], q.shape[2], log_gate is not None),
                      gpu=q.is_cuda)


def gate_for(plan: DeltaPlan, log_gate, shape, device):
    """The log gates a call passes: zeros (a gate of one) where the plan's kernels take a gate and the layer has
    none (plan_delta's GATE)."""
    if log_gate is None and dict(plan.shared)["GATE"]:
        return torch.zeros(shape, device=device, dtype=torch.float32)
    return log_gate


def delta_forward(q, k, v, beta, log_gate, scale: float, initial_state, plan: DeltaPlan, saves: bool):
    """(y (b, L, H, V) in v's dtype, final state fp32, saved: (w, G, U, states, T) or None)."""
    b, L, H, V = v.shape
    c = dict(plan.shared)
    constants = plan.forward_constants(PRECISIONS[v.dtype], initial_state is not None)
    kernels = load_kernel_once(FORWARD_TEMPLATE, constants, {"kernels": "chunked delta rule forward"})
    f32 = dict(device=v.device, dtype=torch.float32)
    n_chunks = triton.cdiv(L, c["Q"])
    G = torch.empty(b, H, L, **f32) if c["GATE"] else None
    gates = (G,) if c["GATE"] else ()
    T = torch.empty(b, H, n_chunks, c["Q"], c["Q"], **f32)
    kernels.delta_solve_fwd[(n_chunks, b * H)](k, beta, *((log_gate, G) if c["GATE"] else ()), T, L, H,
                                               num_warps=plan.prepare_warps)
    # what passes between the kernels: fp32 for the backward, else in the inputs' dtype (the template says why)
    between = f32 if saves else dict(device=v.device, dtype=v.dtype)
    w, u = torch.empty(b, H, L, c["K"], **between), torch.empty(b, H, L, V, **between)
    kernels.delta_wu_fwd[(n_chunks, b * H)](k, v, beta, *gates, T, w, u, L, H, num_warps=plan.prepare_warps)
    final = torch.empty(b, H, c["K"], V, **f32)
    U = torch.empty(b, H, L, V, **between)
    states = torch.empty(b, H, n_chunks, c["K"], V, **between)
    kernels.delta_state_fwd[(V // c["BV"], b * H)](
        k, *gates, w, u, U, states, *((initial_state,) if initial_state is not None else ()), final, L, H,
        num_warps=plan.state_warps, num_stages=plan.forward_stages)
    y = torch.empty_like(v)
    kernels.delta_output_fwd[(V // plan.output_block, n_chunks, b * H)](
        q, k, *gates, U, states, y, L, H, scale, num_warps=plan.output_warps)
    return y, final, ((w, G, U, states, T) if saves else None)


def delta_backward(dy, dfinal, q, k, v, beta, saved, has_initial_state: bool, scale: float, plan: DeltaPlan):
    """(dq, dk, dv, dbeta, dlog_gate or None, dinitial_state or None), fp32."""
    w, G, U, states, T = saved
    b, L, H, V = v.shape
    c = dict(plan.shared)
    constants = plan.backward_constants(PRECISIONS[v.dtype], has_initial_state)
    kernels = load_kernel_once(BACKWARD_TEMPLATE, constants, {"kernels": "chunked delta rule backward"})
    f32 = dict(device=v.device, dtype=torch.float32)
    gates = (G,) if c["GATE"] else ()
    n_chunks = states.shape[2]
    dU, dstates = torch.empty(b, H, L, V, **f32), torch.empty_like(states)
    dstate0 = torch.empty(b, H, c["K"], V, **f32) if has_initial_state else None
    kernels.delta_state_bwd[(V // c["BV"], b * H)](
        q, k, *gates, w, dy, dfinal, dU, dstates, *((dstate0,) if has_initial_state else ()), L, H, scale,
        num_warps=plan.backward_warps, num_stages=plan.state_stages)
    dq, dk = torch.empty(b, L, H, c["K"], **f32), torch.empty(b, L, H, c["K"], **f32)
    dv, dbeta = torch.empty(b, L, H, V, **f32), torch.empty(b, L, H, **f32)
    dlog_gate = torch.empty(b, L, H, **f32) if c["GATE"] else None
    kernels.delta_chunk_bwd[(n_chunks, b * H)](
        q, k, v, beta, *gates, T, U, states, dy, dU, dstates, torch.empty_like(T), dq, dk, dv, dbeta,
        *((dlog_gate,) if c["GATE"] else ()), L, H, scale, num_warps=plan.backward_warps)
    key_heads = q.shape[2]
    dq, dk = (g.view(b, L, key_heads, H // key_heads, c["K"]).sum(3) for g in (dq, dk))
    return dq, dk, dv, dbeta, dlog_gate, dstate0


class DeltaRuleChunked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, beta, log_gate, initial_state, scale, plan, saves):
        y, final, saved = delta_forward(q, k, v, beta, log_gate, scale, initial_state, plan, saves)
        if saves:
            ctx.save_for_backward(q, k, v, beta, *saved)
            ctx.scale, ctx.plan, ctx.has_initial_state = scale, plan, initial_state is not None
            ctx.dtypes = [None if t is None else t.dtype for t in (q, k, v, beta, log_gate, initial_state)]
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        q, k, v, beta, *saved = ctx.saved_tensors
        grads = delta_backward(dy.contiguous(), dfinal.float().contiguous(), q, k, v, beta, saved,
                               ctx.has_initial_state, ctx.scale, ctx.plan)
        return (*(None if g is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)), None, None, None)


def delta_rule_chunked_triton(q, k, v, beta, log_gate=None, chunk: int = 64, scale: float | None = None,
                              initial_state=None, plan: DeltaPlan | None = None):
    """As `reference.delta_rule_chunked`: (y (b, L, H, V) in v's dtype, final state (b, H, K, V) fp32).
    q, k (b, L, Hk, K); v (b, L, H, V); beta, log_gate (b, L, H); plan: the layer's (None: from the sizes)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, beta = (t.contiguous() for t in (q, k, v, beta))
    log_gate = None if log_gate is None else log_gate.contiguous()
    initial_state = None if initial_state is None else initial_state.float().contiguous()
    compiling = torch.compiler.is_compiling()
    if plan is None and not compiling:  # a compiled call without a plan leaves it to the op (ops.traced_plan_key)
        plan = plan_for(q, v, log_gate, chunk)
    if plan is not None:
        log_gate = gate_for(plan, log_gate, beta.shape, beta.device)
    if compiling:  # the custom ops, which torch.compile and torch.export see whole
        from composer.kernels.delta.ops import delta_rule_chunked_op
        return delta_rule_chunked_op(q, k, v, beta, log_gate, initial_state, scale, plan, chunk)
    # saved for a backward only where one can run (grad mode on, an input that needs a gradient)
    saves = torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                            for t in (q, k, v, beta, log_gate, initial_state))
    return DeltaRuleChunked.apply(q, k, v, beta, log_gate, initial_state, scale, plan, saves)


def delta_step_triton(state, q, k, v, beta, log_gate=None, scale: float | None = None, plan: DeltaPlan | None = None):
    """As `reference.delta_rule_step`: (y (b, H, V) fp32, the new state (b, H, K, V) fp32), one token.
    state (b, H, K, V); q, k (b, Hk, K); v (b, H, V); beta, log_gate (b, H)."""
    b, H, V = v.shape
    plan = plan or plan_delta(DeltaSizes(q.shape[-1], V, 16, H, q.shape[1], log_gate is not None), gpu=v.is_cuda)
    log_gate = gate_for(plan, log_gate, beta.shape, beta.device)
    kernels = load_kernel_once(STEP_TEMPLATE, plan.step_constants(), {"kernels": "delta rule decoding step"})
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    y = torch.empty(b, H, V, device=v.device, dtype=torch.float32)
    new_state = torch.empty_like(state, dtype=torch.float32)
    gates = () if log_gate is None else (log_gate.contiguous(),)
    kernels.delta_step[(V // dict(plan.shared)["BV"], b * H)](
        state.float().contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous(), *gates, y,
        new_state, H, scale)
    return y, new_state
