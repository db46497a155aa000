"""Gated linear attention (GLA): linear attention whose state decays per key channel, with the decay made from
the input by a low-rank gate, a per-head RMS norm and a swish output gate (Yang et al., 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.gla.plan import fits
from composer.kernels.gla.reference import gla_chunked, gla_step
from composer.kernels.plan import runs_generated
from composer.layers.cache import CacheEntry


class GatedLinearAttention(nn.Module):
    """q, k (heads x key_dim) and v (heads x head_dim) projections; log a_t = logsigmoid(W_up W_down x_t + b)
    / gate_normalizer per key channel (the normaliser keeps decays near 1, as GLA's 16 does); the chunked form
    over the sequence; RMS norm over each head's values, times swish(W_g x) with output_gate; out projection.

    `backend` ("auto", "reference" or "triton") picks the chunked form: the generated kernels (kernels/gla, in
    the activations' dtype, bf16 operands under autocast) or the fp32 reference; `build` sets it and hands the
    plan's GLAPlan (`receive_plan`; without it the launcher plans from the sizes). With the kernels a decoding
    step runs the generated step kernel on the cache's state in place."""

    backend = "auto"
    plan = None  # the plan's GLAPlan, set by `build`

    def __init__(self, d_model: int, heads: int, head_dim: int, key_dim: int, gate_rank: int = 16,
                 gate_normalizer: float = 16.0, output_gate: bool = True, chunk: int = 64, eps: float = 1e-5):
        super().__init__()
        self.heads, self.head_dim, self.key_dim, self.chunk = heads, head_dim, key_dim, chunk
        self.gate_normalizer, self.eps = gate_normalizer, eps
        self.q_proj = nn.Linear(d_model, heads * key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, heads * key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, heads * head_dim, bias=False)
        self.gate_down = nn.Linear(d_model, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, heads * key_dim, bias=True)
        self.g_proj = nn.Linear(d_model, heads * head_dim, bias=False) if output_gate else None
        self.norm_weight = nn.Parameter(torch.ones(head_dim))
        self.o_proj = nn.Linear(heads * head_dim, d_model, bias=False)
        self.layout_sizes = dict(heads=heads, head_dim=head_dim, key_dim=key_dim)
        # the sizes the kernels take on a GPU
        self.planned = fits(key_dim, head_dim, chunk, gpu=True) is None

    def receive_plan(self, entry) -> None:
        self.plan = entry

    @staticmethod
    def cache_layout(length: int, heads: int, head_dim: int, key_dim: int, **_):
        """The state sum_s decay * k_s v_s^T, (heads, key_dim, head_dim), fp32."""
        return (CacheEntry("state", (heads, key_dim, head_dim), "state"),)

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    def _inputs(self, x: torch.Tensor, generated: bool = False):
        """q (scaled by key_dim^-1/2), k, v and the log decays, each (b, L, heads, dim): fp32, or for the
        generated kernels q, k, v in the activations' dtype (the log decays stay fp32)."""
        b, L, _ = x.shape
        cast = (lambda t: t) if generated else (lambda t: t.float())
        q = cast(self.q_proj(x).view(b, L, self.heads, self.key_dim)) * self.key_dim ** -0.5
        k = cast(self.k_proj(x).view(b, L, self.heads, self.key_dim))
        v = cast(self.v_proj(x).view(b, L, self.heads, self.head_dim))
        log_a = F.logsigmoid(self.gate_up(self.gate_down(x)).float()).view(b, L, self.heads, self.key_dim)
        return q, k, v.to(q.dtype), log_a / self.gate_normalizer

    def _chunked(self, q, k, v, log_a, generated: bool, initial_state=None):
        if generated:
            from composer.kernels.gla.chunk import gla_chunked_triton  # imports triton
            return gla_chunked_triton(q, k, v, log_a, self.chunk, initial_state, plan=self.plan)
        return gla_chunked(q, k, v, log_a, self.chunk, initial_state=initial_state)

    def _finish(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, L = x.shape[:2]
        o = F.rms_norm(o.float(), (self.head_dim,), self.norm_weight.float(), self.eps)
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x).view(b, L, self.heads, self.head_dim).float())
        return self.o_proj(o.to(x.dtype).reshape(b, L, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """x (b, L, d_model). With `cache` and `where` it continues the cached state: one token is a step,
        more the chunked form from the state."""
        generated = runs_generated(self.backend, x.is_cuda, self.planned)
        q, k, v, log_a = self._inputs(x, generated)
        if cache is None:
            o, _ = self._chunked(q, k, v, log_a, generated)
            return self._finish(o, x)
        # padding adds nothing to the state and does not decay it
        k, v, log_a = where.keep(k), where.keep(v), where.keep(log_a, 0.0)
        state = cache["state"]
        if x.shape[1] == 1 and generated and state.is_contiguous():
            from composer.kernels.gla.step import gla_step_triton  # imports triton
            o = gla_step_triton(state, q[:, 0], k[:, 0], v[:, 0], log_a[:, 0], plan=self.plan)  # state in place
            return self._finish(o[:, None], x)
        if x.shape[1] == 1:
            o, new_state = gla_step(state.float(), q[:, 0].float(), k[:, 0].float(), v[:, 0].float(), log_a[:, 0])
            o = o[:, None]
        else:
            o, new_state = self._chunked(q, k, v, log_a, generated, initial_state=state.float())
        state.copy_(new_state)
        return self._finish(o, x)
