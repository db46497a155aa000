"""M2-style sequence mixing with a learned Monarch matrix over the (padded) sequence axis.

y = out_proj(gate * M v), with one Monarch matrix M = P^T L P R of size max_len per channel
group (`heads` groups). Shorter inputs are zero-padded to max_len: M is defined on the
full length, and padding at the end leaves earlier outputs of the causal form unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.monarch.reference import monarch_causal, monarch_multiply
from composer.layers.cache import CacheEntry


def _near_identity(count: int, size: int) -> torch.Tensor:
    return torch.eye(size).expand(count, size, size) + 0.02 * torch.randn(count, size, size)


class MonarchMixer(nn.Module):
    def __init__(self, d_model: int, max_len: int, blocks: int, heads: int = 1, causal: bool = False,
                 gate: bool = True):
        super().__init__()
        self.max_len, self.heads, self.causal, self.gate = max_len, heads, causal, gate
        m1, m2 = blocks, max_len // blocks
        self.in_proj = nn.Linear(d_model, (2 if gate else 1) * d_model, bias=False)
        self.L_blocks = nn.Parameter(torch.stack([_near_identity(m2, m1) for _ in range(heads)]))
        self.R_blocks = nn.Parameter(torch.stack([_near_identity(m1, m2) for _ in range(heads)]))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.layout_sizes = dict(d_model=d_model, max_len=max_len, causal=causal)

    @staticmethod
    def cache_layout(length: int, d_model: int, max_len: int, causal: bool = False, **_):
        """The mixer's inputs v at every position so far. Causal Monarch has no recurrent state (M is a learned
        max_len x max_len matrix, not a recurrence), so a step recomputes its row of M x from the cached inputs."""
        if not causal:
            return "bidirectional Monarch mixing reads later tokens, so it has no decoding step"
        return (CacheEntry("inputs", (min(length, max_len), d_model), "activation"),)

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    def _mix(self, v: torch.Tensor) -> torch.Tensor:
        """M v for v (b, L, d), L <= max_len, zero-padded to max_len; fp32 (b, L, d)."""
        b, L, d = v.shape
        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds the Monarch mixer's max_len {self.max_len}")
        # (b, L, heads, d/heads) -> (b * d/heads, max_len, heads): each group shares one Monarch matrix.
        v = F.pad(v.float(), (0, 0, 0, self.max_len - L)).view(b, self.max_len, self.heads, d // self.heads)
        v = v.permute(0, 3, 1, 2).reshape(-1, self.max_len, self.heads)
        mix = monarch_causal if self.causal else monarch_multiply
        y = mix(v, self.L_blocks.float(), self.R_blocks.float())
        y = y.view(b, d // self.heads, self.max_len, self.heads).permute(0, 2, 3, 1).reshape(b, self.max_len, d)
        return y[:, :L]

    # Its cached path checks the buffer's length on the host and writes through masks, so a decoding step of it
    # cannot be captured in a CUDA graph (DecodeGraph runs such a model's steps eagerly).
    decode_reads_host = True

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """x (b, L, d_model). With `cache` and `where` (causal only) the call's inputs join the cached ones and
        each token's output is its row of M over them."""
        u = self.in_proj(x)
        v, g = u.chunk(2, dim=-1) if self.gate else (u, None)
        if cache is None:
            y = self._mix(v).to(x.dtype)
        else:
            inputs = cache["inputs"]
            if int((where.past + where.valid.sum(1)).max()) > inputs.shape[1]:
                raise ValueError(f"the Monarch mixer's cache holds {inputs.shape[1]} positions")
            rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(where.valid)
            inputs[rows[where.valid], where.positions[where.valid]] = v[where.valid].to(inputs.dtype)
            mixed = self._mix(inputs)  # causal: a position's row reads no later (unwritten) input
            y = mixed.gather(1, where.positions[..., None].expand(-1, -1, mixed.shape[2])).to(x.dtype)
        return self.out_proj(y * F.silu(g) if g is not None else y)
