"""The (gated) DeltaNet layer, laid out as Qwen3-Next's linear-attention layer.

    q, k = l2norm(silu(conv(x W_q))), l2norm(silu(conv(x W_k)))     (key_heads heads of key_dim)
    v    = silu(conv(x W_v))                                        (heads heads of head_dim)
    beta = sigmoid(x W_b)  (x2 with beta "sigmoid2": eigenvalues of I - beta k k^T down to -1)
    log a = -exp(A_log) softplus(x W_a + dt_bias)                   (gate only: a Mamba-2-style decay)
    y    = out_proj(rmsnorm_per_head(delta_rule(q, k, v, beta, log a)) * silu(x W_g))

One depthwise short conv runs over [q, k, v] together (so the cache holds one conv history), without
bias, as in Qwen3-Next; the output norm's weight (head_dim) is shared by the heads.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.delta.plan import fits
from composer.kernels.delta.reference import delta_rule_chunked, delta_rule_step
from composer.kernels.plan import runs_generated
from composer.layers.cache import CacheEntry

DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4
L2_EPS = 1e-6  # inside the square root of q and k's norms: a zero vector stays zero


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + L2_EPS)


def _dt_bias(heads: int) -> torch.Tensor:
    """The gate's time step at init, log-uniform in [DT_MIN, DT_MAX], stored as softplus^-1(dt)."""
    dt = torch.exp(torch.rand(heads) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN)).clamp(min=DT_FLOOR)
    return dt + torch.log(-torch.expm1(-dt))


class GatedDeltaNet(nn.Module):
    """DeltaNet (gate = False) or Gated DeltaNet (gate = True). Without a cache the chunked form runs
    over the whole sequence; with one, a single token is a recurrent step and more tokens the chunked
    form from the cached state. `backend` ("auto", "reference" or "triton") picks the chunked form's
    implementation as for the other layers: the generated kernels (with `plan`, the plan's DeltaPlan, set
    by `build`) or the plain-PyTorch reference."""

    backend = "auto"
    plan = None

    def __init__(self, d_model: int, heads: int, head_dim: int, key_heads: int, key_dim: int, gate: bool = True,
                 beta: str = "sigmoid", conv: int = 4, norm: str = "l2", out_norm: bool = True, chunk: int = 64,
                 eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim, self.key_heads, self.key_dim = heads, head_dim, key_heads, key_dim
        self.beta_scale = 2.0 if beta == "sigmoid2" else 1.0
        self.normalise, self.chunk, self.eps = norm == "l2", chunk, eps
        self.key_width, self.value_width = key_heads * key_dim, heads * head_dim
        self.q_proj = nn.Linear(d_model, self.key_width, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_width, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_width, bias=False)
        self.b_proj = nn.Linear(d_model, heads, bias=False)
        self.a_proj = nn.Linear(d_model, heads, bias=False) if gate else None
        if gate:
            self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
            self.dt_bias = nn.Parameter(_dt_bias(heads))
        channels = 2 * self.key_width + self.value_width
        self.conv1d = nn.Conv1d(channels, channels, conv, groups=channels, bias=False) if conv else None
        self.g_proj = nn.Linear(d_model, self.value_width, bias=False) if out_norm else None
        self.norm_weight = nn.Parameter(torch.ones(head_dim)) if out_norm else None
        self.o_proj = nn.Linear(self.value_width, d_model, bias=False)
        self.layout_sizes = dict(heads=heads, head_dim=head_dim, key_heads=key_heads, key_dim=key_dim, conv=conv)
        # the sizes the kernels take
        self.planned = fits(key_dim, head_dim, chunk) is None

    def receive_plan(self, entry) -> None:
        self.plan = entry

    @staticmethod
    def cache_layout(length: int, heads: int, head_dim: int, key_heads: int, key_dim: int, conv: int = 4, **_):
        """The delta state (heads, key_dim, head_dim), fp32 by default, and the short conv's last conv - 1
        inputs of [q, k, v]; `length` aside (the state does not grow)."""
        entries = [CacheEntry("delta_state", (heads, key_dim, head_dim), "state")]
        if conv > 1:
            entries.append(CacheEntry("conv_state", (2 * key_heads * key_dim + heads * head_dim, conv - 1),
                                      "activation"))
        return tuple(entries)

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    def _conv(self, qkv: torch.Tensor) -> torch.Tensor:
        if self.conv1d is None:
            return F.silu(qkv)
        width = self.conv1d.kernel_size[0]
        return F.silu(self.conv1d(F.pad(qkv.transpose(1, 2), (width - 1, 0))).transpose(1, 2))

    def _cached_conv(self, qkv: torch.Tensor, cache: dict, where) -> torch.Tensor:
        """The causal conv continuing the cached inputs (b, channels, conv - 1), which it updates; padding
        enters as zeros (as the zeros before a sequence) and leaves zeros."""
        qkv = where.keep(qkv)
        if self.conv1d is None:
            return where.keep(F.silu(qkv))
        history = cache["conv_state"]
        window = torch.cat([history.to(qkv.dtype), qkv.transpose(1, 2)], dim=2)
        history.copy_(window[:, :, window.shape[2] - history.shape[2]:])
        out = F.conv1d(window, self.conv1d.weight, None, groups=self.conv1d.groups)
        return where.keep(F.silu(out.transpose(1, 2)))

    def _inputs(self, x: torch.Tensor, cache: dict | None = None, where=None):
        """(q, k, v, beta, log_gate) of the delta rule, fp32 (log_gate None without a gate), and the projections'
        dtype (bf16 under autocast)."""
        b, L, _ = x.shape
        qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)
        qkv = self._conv(qkv) if cache is None else self._cached_conv(qkv, cache, where)
        q, k, v = torch.split(qkv.float(), [self.key_width, self.key_width, self.value_width], dim=-1)
        q, k = (t.reshape(b, L, self.key_heads, self.key_dim) for t in (q, k))
        if self.normalise:
            q, k = l2_normalise(q), l2_normalise(k)
        beta = self.beta_scale * torch.sigmoid(self.b_proj(x).float())
        log_gate = None
        if self.a_proj is not None:
            log_gate = -torch.exp(self.A_log.float()) * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
        if cache is not None:  # padding writes nothing and decays nothing
            beta = where.keep(beta, 0.0)
            log_gate = None if log_gate is None else where.keep(log_gate, 0.0)
        return q, k, v.reshape(b, L, self.heads, self.head_dim), beta, log_gate, qkv.dtype

    def _finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The gated per-head rmsnorm (Qwen3-Next's: normalise, then gate) and the output projection."""
        b, L = y.shape[:2]
        y = y.float()
        if self.norm_weight is not None:
            y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight.float()
            y = y * F.silu(self.g_proj(x).float().reshape(b, L, self.heads, self.head_dim))
        return self.o_proj(y.reshape(b, L, self.value_width).to(x.dtype))

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """x (b, L, d_model). With `cache` (this layer's buffers) and `where` (the call's Positions) it
        continues the cached state and conv inputs and updates them; padding leaves both unchanged."""
        if cache is not None:
            return self._forward_cached(x, cache, where)
        *inputs, activations = self._inputs(x)
        y, _ = self._chunked(*inputs, None, activations)
        return self._finish(y, x)

    def _chunked(self, q, k, v, beta, log_gate, state, activations: torch.dtype):
        if runs_generated(self.backend, q.is_cuda, self.planned):
            from composer.kernels.delta.chunk import delta_rule_chunked_triton  # imports triton only when used
            # q, k and v in the projections' dtype: bf16 operands under autocast (beta and the gate stay fp32)
            q, k, v = (t.to(activations) for t in (q, k, v))
            y, final = delta_rule_chunked_triton(q, k, v, beta, log_gate, self.chunk, initial_state=state,
                                                 plan=self.plan)
            return y.float(), final
        return delta_rule_chunked(q, k, v, beta, log_gate, self.chunk, initial_state=state)

    def _forward_cached(self, x: torch.Tensor, cache: dict, where) -> torch.Tensor:
        q, k, v, beta, log_gate, activations = self._inputs(x, cache, where)
        state = cache["delta_state"]
        if x.shape[1] == 1:
            step = delta_rule_step
            if runs_generated(self.backend, q.is_cuda, self.planned):
                from composer.kernels.delta.chunk import delta_step_triton  # imports triton only when used
                step = functools.partial(delta_step_triton, plan=self.plan)
            y, new_state = step(state, q[:, 0], k[:, 0], v[:, 0], beta[:, 0],
                                None if log_gate is None else log_gate[:, 0])
            y = y[:, None]
        else:
            y, new_state = self._chunked(q, k, v, beta, log_gate, state, activations)
        state.copy_(new_state)
        return self._finish(y, x)
