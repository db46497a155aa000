"""The chunked delta rule as PyTorch custom ops, which torch.compile(fullgraph=True) and torch.export see whole.

`NAMESPACE::delta_forward` runs the forward kernels and returns y, the final state and what the backward
reads (empty tensors where a call saves nothing: custom ops return no None); its autograd formula calls
`NAMESPACE::delta_backward`. The launch path runs inside them as plain Python that no tracer enters, and
their fake kernels give the outputs' shapes from the sizes alone. An op's schema carries no dataclass, so
the plan travels as `plan_key`, its repr, parsed back where this process has not seen it.

Eager calls do not come here (`chunk.DeltaRuleChunked` runs the same launchers without the dispatcher's
host time); under torch.compile and torch.export `chunk.delta_rule_chunked_triton` calls `delta_rule_chunked_op`.
"""

from __future__ import annotations

import ast
from typing import Optional

import torch
from torch import Tensor

from composer.kernels.delta.chunk import delta_backward as launch_backward
from composer.kernels.delta.chunk import delta_forward as launch_forward
from composer.kernels.delta.plan import DeltaPlan
from composer.kernels.op_namespace import NAMESPACE

OPS = getattr(torch.ops, NAMESPACE)
_PLANS: dict[str, DeltaPlan] = {}


def plan_key(plan: DeltaPlan) -> str:
    key = repr(plan.fields())
    _PLANS.setdefault(key, plan)
    return key


def plan_of(key: str) -> DeltaPlan:
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = DeltaPlan(*ast.literal_eval(key))
    return plan


def _empty_for_none(tensors, like: Tensor) -> tuple:
    return tuple(like.new_empty(0) if t is None else t for t in tensors)


@torch.library.custom_op(f"{NAMESPACE}::delta_forward", mutates_args=())
def delta_forward(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_gate: Optional[Tensor],
                  initial_state: Optional[Tensor], scale: float, saves: bool,
                  key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """y, the final state, then w, G, U, states and T as `chunk.delta_forward` saves them (empty if not)."""
    y, final, saved = launch_forward(q, k, v, beta, log_gate, scale, initial_state, plan_of(key), saves)
    return _empty_for_none((y, final, *(saved or (None,) * 5)), v)


@delta_forward.register_fake
def _(q, k, v, beta, log_gate, initial_state, scale, saves, key):
    c = dict(plan_of(key).shared)
    b, L, H, V = v.shape
    n = (L + c["Q"] - 1) // c["Q"]
    f32 = dict(dtype=torch.float32)
    saved = (v.new_empty(b, H, L, c["K"], **f32), v.new_empty(b, H, L, **f32) if c["GATE"] else None,
             v.new_empty(b, H, L, V, **f32), v.new_empty(b, H, n, c["K"], V, **f32),
             v.new_empty(b, H, n, c["Q"], c["Q"], **f32)) if saves else (None,) * 5
    return _empty_for_none((torch.empty_like(v), v.new_empty(b, H, c["K"], V, **f32), *saved), v)


@torch.library.custom_op(f"{NAMESPACE}::delta_backward", mutates_args=())
def delta_backward(dy: Tensor, dfinal: Tensor, q: Tensor, k: Tensor, v: Tensor, beta: Tensor, w: Tensor,
                   G: Tensor, U: Tensor, states: Tensor, T: Tensor, has_initial_state: bool, scale: float,
                   key: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dq, dk, dv, dbeta, dlog_gate and the initial state's gradient, fp32 (empty where an input is absent)."""
    gate = dict(plan_of(key).shared)["GATE"]
    saved = (w, G if gate else None, U, states, T)
    return _empty_for_none(launch_backward(dy, dfinal, q, k, v, beta, saved, has_initial_state, scale,
                                           plan_of(key)), v)


@delta_backward.register_fake
def _(dy, dfinal, q, k, v, beta, w, G, U, states, T, has_initial_state, scale, key):
    f32 = dict(dtype=torch.float32)
    gate = dict(plan_of(key).shared)["GATE"]
    grads = (q.new_empty(q.shape, **f32), k.new_empty(k.shape, **f32), v.new_empty(v.shape, **f32),
             v.new_empty(beta.shape, **f32), v.new_empty(beta.shape, **f32) if gate else None,
             torch.empty_like(dfinal) if has_initial_state else None)
    return _empty_for_none(grads, v)


def _setup_context(ctx, inputs, output):
    q, k, v, beta, log_gate, initial_state, scale, saves, key = inputs
    ctx.save_for_backward(q, k, v, beta, *output[2:])
    ctx.scale, ctx.key, ctx.has_initial_state = scale, key, initial_state is not None
    ctx.dtypes = [None if t is None else t.dtype for t in (q, k, v, beta, log_gate, initial_state)]


def _backward_formula(ctx, dy, dfinal, *saved_grads):
    q, k, v, beta, w, G, U, states, T = ctx.saved_tensors
    b, _, H, V = v.shape
    dy = torch.zeros_like(v) if dy is None else dy.contiguous()
    dfinal = v.new_zeros(b, H, q.shape[-1], V, dtype=torch.float32) if dfinal is None else dfinal.float().contiguous()
    grads = OPS.delta_backward(dy, dfinal, q, k, v, beta, w, G, U, states, T, ctx.has_initial_state, ctx.scale,
                               ctx.key)
    return (*(None if dtype is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)), None, None, None)


delta_forward.register_autograd(_backward_formula, setup_context=_setup_context)


@torch._dynamo.assume_constant_result
def traced_plan_key(plan_fields: tuple | None, sizes: tuple) -> str:
    """`plan_key` of the layer's plan (its fields) or, without one, of the plan for `sizes`: run once while
    tracing, from plain constants of the traced frame."""
    from composer.kernels.delta.plan import DeltaSizes, plan_delta
    return plan_key(DeltaPlan(*plan_fields) if plan_fields is not None else plan_delta(DeltaSizes(*sizes)))


def delta_rule_chunked_op(q, k, v, beta, log_gate, initial_state, scale: float, plan: DeltaPlan | None,
                          chunk: int):
    """`delta_rule_chunked_triton` (after its contiguity) through the custom ops: y and the final state."""
    inputs = (q, k, v, beta, log_gate, initial_state)
    saves = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    fields = None if plan is None else plan.fields()
    sizes = (q.shape[-1], v.shape[-1], chunk, v.shape[2], q.shape[2], log_gate is not None)
    y, final, *_ = OPS.delta_forward(q, k, v, beta, log_gate, initial_state, scale, saves,
                                     traced_plan_key(fields, sizes))
    return y, final
