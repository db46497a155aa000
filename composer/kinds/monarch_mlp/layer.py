"""The Monarch MLP channel mixer of M2: an MLP whose two dense maps are Monarch matrices."""

from __future__ import annotations

import math

import torch
from torch import nn

from composer.layers.activations import ACTIVATIONS


class MonarchLinear(nn.Module):
    """in -> out through two block-diagonal maps with a transpose between (Monarch, Dao et al. 2022).

    R: `blocks` blocks of (in/blocks -> out/blocks); the output, seen as (blocks, out/blocks),
    is transposed so each L block mixes one element from every R block; L: `blocks`
    blocks of (out/blocks -> out/blocks). Parameters: in*out/blocks + out^2/blocks (+ out bias).
    """

    def __init__(self, d_in: int, d_out: int, blocks: int, bias: bool = True):
        super().__init__()
        self.blocks = blocks
        self.R = nn.Parameter(torch.randn(blocks, d_in // blocks, d_out // blocks) / math.sqrt(d_in // blocks))
        self.L = nn.Parameter(torch.randn(blocks, d_out // blocks, d_out // blocks) / math.sqrt(d_out // blocks))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, b = x.shape[:-1], self.blocks
        h = torch.einsum("...ki,kio->...ko", x.reshape(*lead, b, -1), self.R)      # (..., b, out/b)
        h = h.transpose(-1, -2).reshape(*lead, b, -1)                              # transpose permutation
        y = torch.einsum("...ki,kio->...ko", h, self.L).reshape(*lead, -1)
        return y + self.bias if self.bias is not None else y


class MonarchMLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, blocks: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.fc1 = MonarchLinear(d_model, hidden, blocks, bias)
        self.fc2 = MonarchLinear(hidden, d_model, blocks, bias)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))
