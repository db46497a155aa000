"""Norms: RMSNorm, LayerNorm, and Mamba-2's gated RMSNorm (norm(y * silu(z)))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.norms.reference import gated_rmsnorm
from composer.kernels.plan import runs_generated


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dim. On CUDA, where x and the weight share a dtype,
    torch's fused rms_norm (one kernel, fp32 sums) computes it; elsewhere the reference definition."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and x.dtype == self.weight.dtype:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return gated_rmsnorm(x, None, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__(width, eps=eps)


class GatedRMSNorm(RMSNorm):
    """Mamba-2's output norm: the gate multiplies before normalising (norm_before_gate=False).

    `backend` as for the mixers: "triton" (and "auto" on CUDA tensors) runs the generated fused kernel,
    one pass over x and the gate each way; "reference" the plain-PyTorch definition.
    """

    backend = "auto"
    kernel_constants: dict | None = None  # the plan's norm_constants, set by `build`

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        if runs_generated(self.backend, x.is_cuda):
            from composer.kernels.norms.gated_rmsnorm import gated_rmsnorm_triton  # imports triton only when used
            return gated_rmsnorm_triton(x, gate, self.weight, self.eps, self.kernel_constants)
        return gated_rmsnorm(x, gate, self.weight, self.eps)


def make_norm(kind: str, width: int, eps: float) -> nn.Module:
    return {"rmsnorm": RMSNorm, "layernorm": LayerNorm}[kind](width, eps)
