"""The dense MLP channel mixer: fc2(activation(fc1(x)))."""

from __future__ import annotations

import torch
from torch import nn

from composer.layers.activations import ACTIVATIONS


class MLP(nn.Module):
    def __init__(self, d_model: int, hidden: int, activation: str = "gelu", bias: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, d_model, bias=bias)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))
