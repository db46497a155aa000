"""The chunked delta rule on its generated Triton kernels, with the signature and semantics of
`reference.delta_rule_chunked` (the chunk length comes from the plan).

The forward renders delta_forward.py.jinja for the call's constants (kernels/delta/plan.py) and
launches its two kernels: per chunk, the WY/UT factors w and u; then, sequential over the chunks of
each head, the written values, the outputs and the state.
"""

from __future__ import annotations

import torch
import triton

from composer.codegen.render import load_kernel_once
from composer.kernels.delta.plan import FORWARD_TEMPLATE, DeltaPlan, DeltaSizes, plan_delta

PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "bf16"}


def plan_for(q, v, log_gate, chunk: int) -> DeltaPlan:
    """A plan from the tensors' sizes, for a call made without a layer's plan (tests, direct use)."""
    return plan_delta(DeltaSizes(q.shape[-1], v.shape[-1], chunk, v.shape[2], q.shape[2], log_gate is not None))


def delta_forward(q, k, v, beta, log_gate, scale: float, initial_state, plan: DeltaPlan, saves: bool):
    """(y (b, L, H, V) in v's dtype, final state fp32, saved: (w, u, G, U, states) or None)."""
    b, L, H, V = v.shape
    c = dict(plan.shared)
    constants = plan.forward_constants(PRECISIONS[v.dtype], initial_state is not None, saves)
    kernels = load_kernel_once(FORWARD_TEMPLATE, constants, {"kernels": "chunked delta rule forward"})
    f32 = dict(device=v.device, dtype=torch.float32)
    G = torch.empty(b, H, L, **f32) if c["GATE"] else None
    w, u = torch.empty(b, H, L, c["K"], **f32), torch.empty(b, H, L, V, **f32)
    n_chunks = triton.cdiv(L, c["Q"])
    gates = (log_gate,) if c["GATE"] else ()
    kernels.delta_prepare_fwd[(n_chunks, b * H)](k, v, beta, *gates, G, w, u, L, H, num_warps=plan.prepare_warps)
    y = torch.empty_like(v)
    final = torch.empty(b, H, c["K"], V, **f32)
    U = torch.empty(b, H, L, V, **f32) if saves else None
    states = torch.empty(b, H, n_chunks, c["K"], V, **f32) if saves else None
    kernels.delta_state_fwd[(V // c["BV"], b * H)](
        q, k, *((G,) if c["GATE"] else ()), w, u, y,
        *((initial_state,) if initial_state is not None else ()), final,
        *((U, states) if saves else ()), L, H, scale, num_warps=plan.state_warps)
    return y, final, ((w, u, G, U, states) if saves else None)


class DeltaRuleChunked(torch.autograd.Function):
    """Forward on the generated kernels. Backward: the reference's chunked form differentiated by autograd
    from the saved inputs (the generated backward replaces it)."""

    @staticmethod
    def forward(ctx, q, k, v, beta, log_gate, initial_state, scale, plan):
        y, final, _ = delta_forward(q, k, v, beta, log_gate, scale, initial_state, plan, saves=False)
        ctx.save_for_backward(q, k, v, beta, log_gate, initial_state)
        ctx.scale, ctx.chunk = scale, dict(plan.shared)["Q"]
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        from composer.kernels.delta.reference import delta_rule_chunked

        saved = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_(needs)
                      for t, needs in zip(saved, ctx.needs_input_grad[:6])]
            y, final = delta_rule_chunked(*leaves[:5], ctx.chunk, ctx.scale, leaves[5])
            wanted = [(t, i) for i, t in enumerate(leaves) if t is not None and t.requires_grad]
            grads = torch.autograd.grad((y, final), [t for t, _ in wanted], (dy.float(), dfinal.float()),
                                        allow_unused=True)
        out = [None] * 8
        for (t, i), g in zip(wanted, grads):
            out[i] = None if g is None else g.to(saved[i].dtype)
        return tuple(out)


def delta_rule_chunked_triton(q, k, v, beta, log_gate=None, chunk: int = 64, scale: float | None = None,
                              initial_state=None, plan: DeltaPlan | None = None):
    """As `reference.delta_rule_chunked`: (y (b, L, H, V) in v's dtype, final state (b, H, K, V) fp32).
    q, k (b, L, Hk, K); v (b, L, H, V); beta, log_gate (b, L, H); plan: the layer's (None: from the sizes)."""
    plan = plan or plan_for(q, v, log_gate, chunk)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, beta = (t.contiguous() for t in (q, k, v, beta))
    log_gate = None if log_gate is None else log_gate.contiguous()
    initial_state = None if initial_state is None else initial_state.float().contiguous()
    return DeltaRuleChunked.apply(q, k, v, beta, log_gate, initial_state, scale, plan)
