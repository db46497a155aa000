"""Plain-PyTorch gated RMSNorm: the definition the generated kernel is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gated_rmsnorm(x: torch.Tensor, gate: torch.Tensor | None, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """g / sqrt(mean(g^2) + eps) * weight over the last dim, g = x * silu(gate) (x when gate is None);
    computed in fp32, returned in x's dtype."""
    g = x.float() if gate is None else x.float() * F.silu(gate.float())
    return (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
