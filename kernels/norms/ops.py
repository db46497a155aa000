"""The fused gated RMSNorm as PyTorch custom ops, which torch.compile(fullgraph=True) and torch.export see whole.

`NAMESPACE::gated_rmsnorm_forward` returns the output and each row's rstd; its autograd formula calls
`NAMESPACE::gated_rmsnorm_backward`. The constants travel as a string spelling their items, as for the
SSD ops (kernels/semiseparable/ops.py, which says why); eager calls run `GatedRMSNorm` directly.
"""

from __future__ import annotations

import ast
from typing import Optional

import torch
from torch import Tensor

from composer.kernels.op_namespace import NAMESPACE
from composer.kernels.norms.gated_rmsnorm import _backward, _forward, forward_outputs, norm_constants

OPS = getattr(torch.ops, NAMESPACE)  # the ops below, called by name

_CONSTANTS: dict[str, dict] = {}


def constants_key(constants: dict) -> str:
    """The string an op call carries for these constants; registers them under it."""
    key = repr(tuple(constants.items()))
    _CONSTANTS.setdefault(key, constants)
    return key


def constants_of(key: str) -> dict:
    """The constants `constants_key` gave `key`: a dict lookup, or its items parsed back."""
    constants = _CONSTANTS.get(key)
    if constants is None:
        constants = _CONSTANTS[key] = dict(ast.literal_eval(key))
    return constants


@torch.library.custom_op(f"{NAMESPACE}::gated_rmsnorm_forward", mutates_args=())
def gated_rmsnorm_forward(x: Tensor, gate: Optional[Tensor], weight: Tensor, eps: float,
                          key: str) -> tuple[Tensor, Tensor]:
    """The output and each row's rstd (fp32) of rows x (n_rows, W)."""
    return _forward(constants_of(key), x, gate, weight, eps)


@gated_rmsnorm_forward.register_fake
def _(x, gate, weight, eps, key):
    return forward_outputs(x)


@torch.library.custom_op(f"{NAMESPACE}::gated_rmsnorm_backward", mutates_args=())
def gated_rmsnorm_backward(x: Tensor, gate: Optional[Tensor], weight: Tensor, rstd: Tensor, dout: Tensor,
                           key: str) -> tuple[Tensor, Tensor, Tensor]:
    """dx, dgate (empty without a gate) and dweight (fp32)."""
    dx, dgate, dweight = _backward(constants_of(key), x, gate, weight, rstd, dout)
    return dx, x.new_empty(0) if dgate is None else dgate, dweight


@gated_rmsnorm_backward.register_fake
def _(x, gate, weight, rstd, dout, key):
    dgate = x.new_empty(0) if gate is None else torch.empty_like(gate)
    return torch.empty_like(x), dgate, weight.new_empty(weight.shape, dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    x, gate, weight, _, key = inputs
    ctx.save_for_backward(x, gate, weight, output[1])
    ctx.key = key


def _backward_formula(ctx, dout, _rstd_grad):
    x, gate, weight, rstd = ctx.saved_tensors
    dx, dgate, dweight = OPS.gated_rmsnorm_backward(x, gate, weight, rstd, dout.contiguous(), ctx.key)
    return dx, None if gate is None else dgate, dweight.to(weight.dtype), None, None


gated_rmsnorm_forward.register_autograd(_backward_formula, setup_context=_setup_context)


@torch._dynamo.assume_constant_result
def traced_call_key(width: int, has_gate: bool) -> str:
    """`constants_key` of a call's constants: Dynamo runs this once while tracing and keeps the string."""
    return constants_key(norm_constants(width, has_gate))


def gated_rmsnorm_op(x: Tensor, gate: Tensor | None, weight: Tensor, eps: float) -> Tensor:
    """`gated_rmsnorm_triton` (after its checks) through the custom ops."""
    width = x.shape[-1]
    rows = x.reshape(-1, width).contiguous()
    gate_rows = None if gate is None else gate.reshape(-1, width).to(x.dtype).contiguous()
    out, _ = OPS.gated_rmsnorm_forward(rows, gate_rows, weight.contiguous(), float(eps),
                                                      traced_call_key(width, gate is not None))
    return out.reshape(x.shape)
