"""Norms: RMSNorm, LayerNorm, and Mamba-2's gated RMSNorm (norm(y * silu(z)))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__(width, eps=eps)


class GatedRMSNorm(RMSNorm):
    """Mamba-2's output norm: the gate multiplies before normalising (norm_before_gate=False)."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        if gate is not None:
            x = x * F.silu(gate)
        return super().forward(x)


def make_norm(kind: str, width: int, eps: float) -> nn.Module:
    return {"rmsnorm": RMSNorm, "layernorm": LayerNorm}[kind](width, eps)
