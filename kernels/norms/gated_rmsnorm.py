"""Triton path of the gated RMSNorm: specialise on the row width and the gate, launch, differentiate.

`gated_rmsnorm_triton` has the signature and semantics of `reference.gated_rmsnorm`. The kernels are
rendered from codegen/templates/gated_rmsnorm.py.jinja, once per (width, gate) in a process.
"""

from __future__ import annotations

import torch

from composer.codegen.render import load_kernel_once
from composer.kernels.device import ceil_div, multiprocessors
from composer.kernels.norms.plan import norm_constants
from composer.kernels.norms.reference import gated_rmsnorm

HEADER = {"family": "norms", "rendered_for": "the gated RMSNorm launcher"}
BACKWARD_PROGRAMS_PER_SM = 2  # the backward's programs each sum dweight over a run of rows


def _backward_programs(device: torch.device, n_row_tiles: int) -> int:
    sms = multiprocessors(device) if device.type == "cuda" else 2  # off CUDA: the interpreter, a few programs
    return max(1, min(n_row_tiles, BACKWARD_PROGRAMS_PER_SM * sms))


def _forward(constants: dict, x, gate, weight, eps: float):
    """Run the forward kernel over rows x (n_rows, W): the output and each row's rstd (fp32)."""
    kernels = load_kernel_once("gated_rmsnorm.py.jinja", constants, HEADER)
    n_rows = x.shape[0]
    out, rstd = forward_outputs(x)
    grid = (ceil_div(n_rows, constants["ROWS"]),)
    args = dict(x_ptr=x, weight_ptr=weight, out_ptr=out, rstd_ptr=rstd, n_rows=n_rows, eps=eps)
    if gate is not None:
        args.update(z_ptr=gate, z_row_stride=gate.stride(0))
    kernels.gated_rmsnorm_fwd[grid](**args, num_warps=constants["NUM_WARPS"])
    return out, rstd


def forward_outputs(x) -> tuple:
    """The forward's outputs, unwritten: the custom op's fake kernel shapes them here too."""
    return torch.empty_like(x), x.new_empty(x.shape[0], dtype=torch.float32)


def _backward(constants: dict, x, gate, weight, rstd, dout):
    """Run the backward kernel: dx, dgate (None without a gate) and dweight, summed in fp32."""
    kernels = load_kernel_once("gated_rmsnorm.py.jinja", constants, HEADER)
    n_rows, rows = x.shape[0], constants["ROWS"]
    programs = _backward_programs(x.device, ceil_div(n_rows, rows))
    rows_per_program = ceil_div(ceil_div(n_rows, programs), rows) * rows
    programs = ceil_div(n_rows, rows_per_program)
    dx = torch.empty_like(x)
    dweight_parts = x.new_empty(programs, constants["W"], dtype=torch.float32)
    args = dict(x_ptr=x, weight_ptr=weight, rstd_ptr=rstd, dout_ptr=dout, dx_ptr=dx,
                dweight_parts_ptr=dweight_parts, n_rows=n_rows, rows_per_program=rows_per_program)
    dgate = None
    if gate is not None:
        gate = gate.contiguous()  # the forward's may be a slice (gate_rows); the backward reads dense rows
        dgate = torch.empty_like(gate)
        args.update(z_ptr=gate, dz_ptr=dgate)
    kernels.gated_rmsnorm_bwd[(programs,)](**args, num_warps=constants["NUM_WARPS"])
    return dx, dgate, dweight_parts.sum(0)


class GatedRMSNorm(torch.autograd.Function):
    """Saves x, the gate, the weight and each row's rstd; the backward rebuilds g from them."""

    @staticmethod
    def forward(ctx, x, gate, weight, eps: float, constants: dict):
        out, rstd = _forward(constants, x, gate, weight, eps)
        ctx.save_for_backward(x, gate, weight, rstd)
        ctx.constants = constants
        return out

    @staticmethod
    def backward(ctx, dout):
        x, gate, weight, rstd = ctx.saved_tensors
        dx, dgate, dweight = _backward(ctx.constants, x, gate, weight, rstd, dout.contiguous())
        return dx, dgate, dweight.to(weight.dtype), None, None


def gate_rows_of(gate: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """gate as (rows, width) rows in `dtype`, a view where its rows lie apart with unit stride within (z sliced
    from in_proj's output: copying it cost a decoding step at batch 64 3.4 us a layer on an H200)."""
    rows = gate.reshape(-1, width).to(dtype)
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def gated_rmsnorm_triton(x: torch.Tensor, gate: torch.Tensor | None, weight: torch.Tensor, eps: float,
                         constants: dict | None = None) -> torch.Tensor:
    """g / sqrt(mean(g^2) + eps) * weight over the last dim, g = x * silu(gate) (x when gate is None), in
    x's dtype; sums in fp32. x and gate (..., W) of one shape, weight (W,). constants: the layer's planned
    `norm_constants` (None: planned here for this width and gate)."""
    width = x.shape[-1]
    if weight.shape != (width,) or (gate is not None and gate.shape != x.shape):
        raise ValueError(f"expected x and gate of one shape (..., W) and weight (W,); got {tuple(x.shape)}, "
                         f"{None if gate is None else tuple(gate.shape)}, {tuple(weight.shape)}")
    if x.numel() == 0:  # no rows: nothing to launch, and the reference's autograd handles the empty case
        return gated_rmsnorm(x, gate, weight, eps)
    if torch.compiler.is_compiling():  # torch.compile, torch.export: the custom ops (ops.py)
        from composer.kernels.norms.ops import gated_rmsnorm_op
        return gated_rmsnorm_op(x, gate, weight, eps)
    rows = x.reshape(-1, width).contiguous()
    gate_rows = None if gate is None else gate_rows_of(gate, width, x.dtype)
    out = GatedRMSNorm.apply(rows, gate_rows, weight.contiguous(), float(eps),
                              constants or norm_constants(width, gate is not None))
    return out.reshape(x.shape)
