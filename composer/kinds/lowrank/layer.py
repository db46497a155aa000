"""Linear attention: phi(Q) phi(K)^T V with an optional RetNet-style fixed decay per head."""

from __future__ import annotations

import torch
from torch import nn

from composer.kernels.lowrank.reference import (feature_dim_out, feature_map, linear_attention_chunked,
                                                linear_attention_step)
from composer.layers.cache import CacheEntry
from composer.kernels.plan import runs_generated
from composer.kernels.semiseparable.plan import fits


def retnet_log_decay(heads: int) -> torch.Tensor:
    """RetNet's fixed decays gamma_h = 1 - 2^(-5-h): one time scale per head, not learned."""
    return torch.log1p(-torch.exp2(-5.0 - torch.arange(heads, dtype=torch.float32)))


class LinearAttention(nn.Module):
    """`backend` ("auto", "reference" or "triton") picks the core as for the state-space layers:
    the generated SSD kernels (one group per head) or the plain-PyTorch reference."""

    backend = "auto"
    scan_plans = None  # the plan's (values, normaliser) ScanPlans, set by `build`

    def __init__(self, d_model: int, heads: int, head_dim: int, feature_dim: int, feature_map: str = "elu",
                 causal: bool = True, normalize: bool = True, decay: str = "none", chunk: int = 64):
        super().__init__()
        self.heads, self.head_dim, self.feature_dim = heads, head_dim, feature_dim
        self.map, self.causal, self.normalize, self.chunk = feature_map, causal, normalize, chunk
        self.q_proj = nn.Linear(d_model, heads * feature_dim, bias=False)
        self.k_proj = nn.Linear(d_model, heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, d_model, bias=False)
        self.mapped_dim = feature_dim_out(feature_map, feature_dim)
        self.layout_sizes = dict(heads=heads, head_dim=head_dim, feature_dim=feature_dim, feature_map=feature_map,
                                 causal=causal, normalize=normalize)
        self.planned = fits(head_dim, self.mapped_dim, chunk) is None  # the sizes the kernels take
        if decay == "fixed":
            self.register_buffer("log_decay", retnet_log_decay(heads), persistent=False)
        else:
            self.log_decay = None

    def init_buffers(self) -> None:
        """Compute the fixed decay again, for a loader that made the layer without it (Hugging Face's
        from_pretrained makes modules on the meta device and loads only the saved tensors)."""
        if self.log_decay is not None:
            self.log_decay = retnet_log_decay(self.heads).to(self.q_proj.weight.device)

    def receive_plan(self, entry) -> None:
        """The plan's ScanLayerPlan: the values' and the normaliser's scan plans."""
        self.scan_plans = entry.scans

    @staticmethod
    def cache_layout(length: int, heads: int, head_dim: int, feature_dim: int, feature_map: str = "elu",
                     causal: bool = True, normalize: bool = True, **_):
        """The state sum_s v_s (x) phi(k_s) and, with normalize, the normaliser sum_s phi(k_s), both fp32."""
        if not causal:
            return "non-causal linear attention reads the state after the whole sequence, so it has no decoding step"
        mapped = feature_dim_out(feature_map, feature_dim)
        entries = [CacheEntry("state", (heads, head_dim, mapped), "state")]
        if normalize:
            entries.append(CacheEntry("normaliser", (heads, mapped), "state"))
        return tuple(entries)

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    def forward(self, x: torch.Tensor, cache: dict | None = None, where=None) -> torch.Tensor:
        """x (b, L, d_model). With `cache` and `where` it continues the cached state (the reference forms:
        one token is a step, more the chunked form from the state)."""
        if cache is not None:
            return self._forward_cached(x, cache, where)
        b, L, _ = x.shape
        q = self.q_proj(x).view(b, L, self.heads, self.feature_dim)
        k = self.k_proj(x).view(b, L, self.heads, self.feature_dim)
        v = self.v_proj(x).view(b, L, self.heads, self.head_dim)
        log_a = self.log_decay.expand(b, L, self.heads) if self.log_decay is not None else None
        if runs_generated(self.backend, x.is_cuda, self.planned):
            # in the activations' dtype: bf16 operands under autocast
            from composer.kernels.lowrank.chunk import linear_attention_chunked_triton  # imports triton
            q, k = feature_map(q, self.map), feature_map(k, self.map)
            y, _ = linear_attention_chunked_triton(q, k, v.to(q.dtype), self.chunk, causal=self.causal,
                                                   normalize=self.normalize, log_a=log_a, return_final_state=False,
                                                   plans=self.scan_plans)
        else:
            q, k = feature_map(q.float(), self.map), feature_map(k.float(), self.map)
            y, _ = linear_attention_chunked(q, k, v.float(), self.chunk, causal=self.causal,
                                            normalize=self.normalize, log_a=log_a)
        return self.o_proj(y.to(x.dtype).reshape(b, L, self.heads * self.head_dim))

    def _forward_cached(self, x: torch.Tensor, cache: dict, where) -> torch.Tensor:
        b, L, _ = x.shape
        q = feature_map(self.q_proj(x).view(b, L, self.heads, self.feature_dim).float(), self.map)
        k = feature_map(self.k_proj(x).view(b, L, self.heads, self.feature_dim).float(), self.map)
        k = where.keep(k)  # padding adds nothing to the state or the normaliser
        v = where.keep(self.v_proj(x).view(b, L, self.heads, self.head_dim).float())
        log_a = None
        if self.log_decay is not None:
            log_a = where.keep(self.log_decay.expand(b, L, self.heads), 0.0)
        state = (cache["state"], cache["normaliser"]) if self.normalize else cache["state"]
        if L == 1:
            y, new_state = linear_attention_step(state, q[:, 0], k[:, 0], v[:, 0],
                                                 None if log_a is None else log_a[:, 0], self.normalize)
            y = y[:, None]
        else:
            y, new_state = linear_attention_chunked(q, k, v, self.chunk, causal=True, normalize=self.normalize,
                                                    log_a=log_a, initial_state=state)
        for buffer, new in zip(state if self.normalize else (state,), new_state if self.normalize else (new_state,)):
            buffer.copy_(new)
        return self.o_proj(y.to(x.dtype).reshape(b, L, self.heads * self.head_dim))
