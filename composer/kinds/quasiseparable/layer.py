"""The Hydra (quasiseparable) layer: two semiseparable halves, forward and reversed, plus a diagonal."""

from __future__ import annotations

import torch
from torch import nn

from composer.kernels.quasiseparable.reference import shift
from composer.kinds.semiseparable.layer import _StateSpaceBase, ssd_scan


class Hydra(_StateSpaceBase):
    """Hydra (Hwang et al., 2024): shift(SS_fw(x)) + flip(shift(SS_bw(flip x))) + (D + fc_D(x)) x.

    Each direction has its own B, C and dt; dt_bias and A are shared, as in Hydra's code.
    The two halves scale x by their own dt, so the layer runs the SSD core twice itself.
    """

    def __init__(self, d_model: int, heads: int, head_dim: int, state: int, groups: int = 1, chunk: int = 256,
                 conv: int = 7, gate: bool = True, out_norm: bool = True, skip: bool = True, bias: bool = False,
                 eps: float = 1e-5):
        super().__init__(d_model, heads, head_dim, state, groups, chunk, conv, "data", gate, out_norm, skip, bias,
                         directions=2, causal_conv=False, eps=eps)
        self.fc_D = nn.Linear(self.d_inner, heads, bias=False)
        self.layout_sizes = {}

    @staticmethod
    def cache_layout(length: int, **_):
        """None to cache: Hydra is bidirectional (its reversed half reads every later token)."""
        return "Hydra (quasiseparable) is bidirectional: each output reads later tokens, so it has no decoding step"

    def cache_entries(self, length: int):
        return self.cache_layout(length)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        b, L, _ = hidden.shape
        z, x, bc, dt = self._split(self.in_proj(hidden))
        halves = []
        for direction in (0, 1):
            log_a, dt_scale = self._decay(dt, b, L, direction)
            x_in, B, C = x, bc[:, :, direction, 0], bc[:, :, direction, 1]
            if direction == 1:
                x_in, log_a, B, C, dt_scale = (t.flip(1) for t in (x_in, log_a, B, C, dt_scale))
            y = ssd_scan(x_in, log_a, B, C, self.chunk, self.backend, dt=dt_scale, planned=self.planned,
                         plan=self.scan_plan)
            y = shift(y)
            halves.append(y.flip(1) if direction == 1 else y)
        diagonal = self.fc_D(x.reshape(b, L, self.d_inner)).float()
        if self.D is not None:
            diagonal = diagonal + self.D.float()
        y = halves[0] + halves[1] + x.float() * diagonal[..., None]
        return self._finish(y.to(hidden.dtype), z)
