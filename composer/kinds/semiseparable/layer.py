"""The Mamba-2 (SSD) layer on the semiseparable core, and the base it shares with Hydra.

Widths: d_inner = heads * head_dim; B and C have `groups` groups of `state` channels.
in_proj packs [z (gate), x, B, C, dt] in that order, as mamba_ssm does, so
parameter counts match the published models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from composer.kernels.semiseparable.reference import ssd_chunked, ssd_step
from composer.kernels.plan import runs_generated
from composer.kernels.semiseparable.plan import fits
from composer.layers.cache import CacheEntry
from composer.layers.norms import GatedRMSNorm, RMSNorm

DT_MIN, DT_MAX, DT_FLOOR = 1e-3, 1e-1, 1e-4


def ssd_scan(x, log_a, B, C, chunk: int, backend: str, dt=None, D=None, planned: bool = True,
             plan=None) -> torch.Tensor:
    """The SSD core y (fp32) of input x * dt (x alone when dt is None) and decay log_a (None: no
    decay), plus D[h] x when D (H,) is given (Mamba-2's skip). The generated Triton kernels run for
    backend "triton", and for "auto" on CUDA tensors when the plan put the layer on them (`planned`);
    the plain-PyTorch reference otherwise, in fp32. plan: the layer's ScanPlan, every constant of the
    kernels (None: planned from the tensors' sizes).

    x, B and C keep the activations' dtype: under bf16 autocast the kernels multiply bf16 operands
    on the tensor cores (fp32 accumulation), as mamba_ssm does; dt scales x and D adds the skip inside
    the kernels, and log_a=None renders them without decay code.
    """
    if runs_generated(backend, x.is_cuda, planned):
        from composer.kernels.semiseparable.chunk import ssd_chunked_triton  # imports triton only when used
        y, _ = ssd_chunked_triton(x, log_a, B, C, chunk, return_final_state=False, dt=dt, D=D, plan=plan)
        return y.float()
    x = x.float()
    log_a = torch.zeros(x.shape[:3], device=x.device) if log_a is None else log_a
    y, _ = ssd_chunked(x if dt is None else x * dt[..., None], log_a, B.float(), C.float(), chunk)
    return y if D is None else y + x * D.float()[:, None]


def ssd_scan_cached(x, log_a, B, C, chunk: int, backend: str, state: torch.Tensor, dt=None, D=None,
                    planned: bool = True, plan=None) -> torch.Tensor:
    """`ssd_scan` continuing a cached state (b, H, P, N), which it replaces in place by the final one.

    One token is a decoding step (`ssd_step`, or the generated step kernel); more run the chunked scan
    from the state (prefill). The step kernel and the chunked kernels with a state in and out run where
    `ssd_scan` runs the generated kernels; plan: the prefill's ScanPlan (None: planned from the tensors' sizes).
    """
    b, L, H, _ = x.shape
    generated = runs_generated(backend, x.is_cuda, planned)
    if log_a is None and not generated:
        log_a = torch.zeros(b, L, H, device=x.device)
    scaled = x.float() if dt is None else x.float() * dt[..., None]
    if L == 1:
        if generated:
            from composer.kernels.semiseparable.step import ssd_step_triton  # imports triton only when used
            y, new_state = ssd_step_triton(state, scaled[:, 0], None if log_a is None else log_a[:, 0],
                                           B[:, 0].contiguous(), C[:, 0].contiguous(), plan=plan)
        else:
            y, new_state = ssd_step(state.float(), scaled[:, 0], log_a[:, 0], B[:, 0].float(), C[:, 0].float())
        y = y[:, None].float()
    elif generated:
        from composer.kernels.semiseparable.chunk import ssd_chunked_triton  # imports triton only when used
        y, new_state = ssd_chunked_triton(x, log_a, B, C, chunk, initial_state=state, return_final_state=True,
                                          dt=dt, plan=plan)
        y = y.float()
    else:
        y, new_state = ssd_chunked(scaled, log_a, B.float(), C.float(), chunk, initial_state=state.float())
    state.copy_(new_state)
    return y if D is None else y + x.float() * D.float()[:, None]


def _dt_bias(heads: int) -> torch.Tensor:
    """Mamba's init: dt log-uniform in [DT_MIN, DT_MAX], stored as softplus^-1(dt)."""
    dt = torch.exp(torch.rand(heads) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
    dt = dt.clamp(min=DT_FLOOR)
    return dt + torch.log(-torch.expm1(-dt))


class _StateSpaceBase(nn.Module):
    """Projections, short conv, decay parameters, skip, gate and output norm shared by both layers.

    `backend` ("auto", "reference" or "triton") picks the SSD core; `build` sets it, and hands
    the layer its plan: `scan_plan` (the kernels' ScanPlan, None off the generated path or when the layer
    was made without `build`: then it is planned from the tensors' sizes), `prefill_plan` and, for Mamba-2,
    `decode_plan` (the fused decoding step's constants; without `build`: from the layer's sizes).
    """

    backend = "auto"
    scan_plan = prefill_plan = decode_plan = None

    def __init__(self, d_model: int, heads: int, head_dim: int, state: int, groups: int, chunk: int, conv: int,
                 decay: str, gate: bool, out_norm: bool, skip: bool, bias: bool, directions: int,
                 causal_conv: bool, eps: float = 1e-5):
        super().__init__()
        self.heads, self.head_dim, self.state, self.groups, self.chunk = heads, head_dim, state, groups, chunk
        self.decay, self.gate, self.causal_conv, self.directions = decay, gate, causal_conv, directions
        self.d_inner = heads * head_dim
        self.bc_width = directions * 2 * groups * state
        self.dt_width = directions * heads if decay == "data" else 0
        z_width = self.d_inner if gate else 0
        self.in_proj = nn.Linear(d_model, z_width + self.d_inner + self.bc_width + self.dt_width, bias=bias)
        conv_channels = self.d_inner + self.bc_width
        self.conv1d = nn.Conv1d(conv_channels, conv_channels, conv, groups=conv_channels) if conv else None
        if decay == "data":
            self.dt_bias = nn.Parameter(_dt_bias(heads))
        if decay in ("data", "fixed"):
            self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(heads)) if skip else None
        self.norm = GatedRMSNorm(self.d_inner, eps) if out_norm else None
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.planned = fits(head_dim, state, chunk) is None  # the sizes the kernels take

    def receive_plan(self, entry) -> None:
        """The plan's ScanLayerPlan: the scan's plan, and the output norm's constants."""
        self.scan_plan = entry.scans[0] if entry.scans else None
        self.prefill_plan = entry.prefill[0] if entry.prefill else None
        self.decode_plan = getattr(entry, "decode", None)  # the fused decoding step's constants (Mamba-2)
        if self.norm is not None:
            self.norm.kernel_constants = entry.norm

    def _short_conv(self, xbc: torch.Tensor) -> torch.Tensor:
        if self.conv1d is None:
            return F.silu(xbc)
        width = self.conv1d.kernel_size[0]
        left = width - 1 if self.causal_conv else (width - 1) // 2  # causal, or centred (bidirectional)
        padded = F.pad(xbc.transpose(1, 2), (left, width - 1 - left))
        return F.silu(self.conv1d(padded).transpose(1, 2))

    def _cached_conv(self, xbc: torch.Tensor, cache: dict, valid) -> torch.Tensor:
        """The causal short conv continuing the cached inputs (b, channels, conv - 1), which it updates.
        Padding (`valid`: the call's Positions) enters as zeros, as the zero padding before a sequence does,
        and leaves zeros after."""
        xbc = valid.keep(xbc)
        if self.conv1d is None:
            return valid.keep(F.silu(xbc))
        history = cache["conv_state"]
        window = torch.cat([history.to(xbc.dtype), xbc.transpose(1, 2)], dim=2)
        history.copy_(window[:, :, window.shape[2] - history.shape[2]:])
        out = F.conv1d(window, self.conv1d.weight, self.conv1d.bias, groups=self.conv1d.groups)
        return valid.keep(F.silu(out.transpose(1, 2)))

    def _split(self, u: torch.Tensor, cache: dict | None = None, valid=None):
        b, L, _ = u.shape
        z_width = self.d_inner if self.gate else 0
        z, xbc, dt = torch.split(u, [z_width, self.d_inner + self.bc_width, self.dt_width], dim=-1)
        xbc = self._short_conv(xbc) if cache is None else self._cached_conv(xbc, cache, valid)
        x, bc = torch.split(xbc, [self.d_inner, self.bc_width], dim=-1)
        bc = bc.reshape(b, L, self.directions, 2, self.groups, self.state)
        return (z if self.gate else None), x.reshape(b, L, self.heads, self.head_dim), bc, dt

    def _decay(self, dt: torch.Tensor, b: int, L: int, direction: int):
        """(log_a (b, L, H) or None for no decay, x scale (b, L, H) or None) for one direction, fp32."""
        if self.decay == "data":
            dt = F.softplus(dt.reshape(b, L, self.directions, self.heads)[:, :, direction].float() + self.dt_bias)
            return dt * -torch.exp(self.A_log.float()), dt
        if self.decay == "fixed":
            return (-torch.exp(self.A_log.float())).expand(b, L, self.heads), None
        return None, None

    def _finish(self, y: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        b, L = y.shape[:2]
        y = y.reshape(b, L, self.d_inner)
        if self.norm is not None:
            y = self.norm(y, z)
        elif z is not None:
            y = y * F.silu(z)
        return self.out_proj(y)


class Mamba2(_StateSpaceBase):
    """Mamba-2 SSD mixer (Dao & Gu, 2024): y = SSD(x dt, dt A, B, C) + D x, gated, normed."""

    def __init__(self, d_model: int, heads: int, head_dim: int, state: int, groups: int = 1, chunk: int = 256,
                 conv: int = 4, decay: str = "data", gate: bool = True, out_norm: bool = True, skip: bool = True,
                 bias: bool = False, eps: float = 1e-5):
        super().__init__(d_model, heads, head_dim, state, groups, chunk, conv, decay, gate, out_norm, skip, bias,
                         directions=1, causal_conv=True, eps=eps)
        self.layout_sizes = dict(heads=heads, head_dim=head_dim, state=state, groups=groups, conv=conv)
        self.decode_sizes = dict(head_dim=head_dim, state=state, heads=heads, groups=groups, conv=conv, gate=gate,
                                 decay=decay, skip=skip)

    @staticmethod
    def cache_layout(length: int, heads: int, head_dim: int, state: int, groups: int = 1, conv: int = 4, **_):
        """The SSM state (fp32 by default) and the last conv - 1 inputs of the short conv; `length` aside."""
        entries = [CacheEntry("ssm_state", (heads, head_dim, state), "state")]
        if conv > 1:
            entries.append(CacheEntry("conv_state", (heads * head_dim + 2 * groups * state, conv - 1), "activation"))
        return tuple(entries)

    def cache_entries(self, length: int):
        return self.cache_layout(length, **self.layout_sizes)

    adds_residual = True  # Block hands the cached path its residual: a decoding step adds it inside out_proj

    def forward(self, hidden: torch.Tensor, cache: dict | None = None, where=None,
                residual: torch.Tensor | None = None, norm: nn.Module | None = None) -> torch.Tensor:
        """hidden (b, L, d_model). With `cache` (this layer's buffers) and `where` (the call's Positions) it
        continues the cached state and conv inputs and updates them; padding leaves both unchanged.
        With a cache only: residual (b, L, d_model) is returned added to the output, and `norm` (the block's
        pre-norm) is applied to hidden first, inside in_proj's kernel when a decoding step can take it."""
        if cache is not None:
            return self._forward_cached(hidden, cache, where, residual, norm)
        b, L, _ = hidden.shape
        z, x, bc, dt = self._split(self.in_proj(hidden))
        log_a, dt_scale = self._decay(dt, b, L, 0)
        y = ssd_scan(x, log_a, bc[:, :, 0, 0], bc[:, :, 0, 1], self.chunk, self.backend, dt=dt_scale, D=self.D,
                     planned=self.planned, plan=self.scan_plan)
        return self._finish(y.to(hidden.dtype), z)

    def _forward_cached(self, hidden: torch.Tensor, cache: dict, where, residual=None, norm=None) -> torch.Tensor:
        b, L, _ = hidden.shape
        if L == 1 and not where.padded and self.conv1d is not None and not torch.compiler.is_compiling() \
                and runs_generated(self.backend, hidden.is_cuda, self.planned):
            return self._decode_step(hidden, cache, residual, norm)
        if norm is not None:
            hidden = norm(hidden)
        out = self._scan_cached(hidden, cache, where)
        return out if residual is None else residual + out

    def _scan_cached(self, hidden: torch.Tensor, cache: dict, where) -> torch.Tensor:
        b, L, _ = hidden.shape
        z, x, bc, dt = self._split(self.in_proj(hidden), cache, where)
        log_a, dt_scale = self._decay(dt, b, L, 0)
        if log_a is not None:  # padding neither decays the state nor adds to it (its x and B are zero)
            log_a = where.keep(log_a, 0.0)
        y = ssd_scan_cached(x, log_a, bc[:, :, 0, 0], bc[:, :, 0, 1], self.chunk, self.backend, cache["ssm_state"],
                            dt=dt_scale, D=self.D, planned=self.planned, plan=self.prefill_plan)
        return self._finish(y.to(hidden.dtype), z)

    def _decode_step(self, hidden: torch.Tensor, cache: dict, residual=None, norm=None) -> torch.Tensor:
        """One token a row on the generated kernels. Where the GEMMs can take the layer (no biases, the block's
        norm an RMSNorm or none, batch up to decode_plan.FUSED_MAX_BATCH), three
        kernels: the block's norm, in_proj and the short conv; dt, decay, state update and D's skip; the gate,
        the output norm, out_proj and `residual`'s add. Otherwise the norm, torch's in_proj, the two-kernel
        step, the norm module and out_proj adding `residual` in its GEMM. Either is the same as the path above,
        with the states updated in place."""
        from composer.kernels.semiseparable.decode_plan import decode_constants  # imports triton only when used
        from composer.kernels.semiseparable.step import ssd_decode_layer_triton, ssd_decode_step_triton
        if self.decode_plan is None:
            self.decode_plan = decode_constants(**self.decode_sizes)
        if self._takes_three_kernels(norm, hidden.shape[0]):
            out = ssd_decode_layer_triton(
                self.decode_plan, hidden[:, 0], self.in_proj.weight, cache["conv_state"], self.conv1d.weight,
                self.conv1d.bias, cache["ssm_state"], self.out_proj.weight,
                pre_norm=None if norm is None else (norm.weight, norm.eps), dt_bias=getattr(self, "dt_bias", None),
                A_log=getattr(self, "A_log", None), D=self.D,
                out_norm=None if self.norm is None else (self.norm.weight, self.norm.eps),
                residual=None if residual is None else residual[:, 0])
            return out[:, None]
        if norm is not None:
            hidden = norm(hidden)
        u = self.in_proj(hidden[:, 0])
        y = ssd_decode_step_triton(self.decode_plan, u, cache["conv_state"], self.conv1d.weight, self.conv1d.bias,
                                   cache["ssm_state"], getattr(self, "dt_bias", None), getattr(self, "A_log", None),
                                   self.D)
        z = u[:, :self.d_inner] if self.gate else None
        if self.norm is not None:
            y = self.norm(y, z)
        elif z is not None:
            y = y * F.silu(z)
        if residual is None or self.out_proj.bias is not None:
            out = self.out_proj(y[:, None])
            return out if residual is None else residual + out
        return torch.addmm(residual[:, 0], y, self.out_proj.weight.t())[:, None]  # one GEMM adds the residual

    def _takes_three_kernels(self, norm, batch: int) -> bool:
        from composer.kernels.semiseparable.decode_plan import fused_reason
        return (self.in_proj.bias is None and self.out_proj.bias is None and (norm is None or type(norm) is RMSNorm)
                and (self.norm is None or type(self.norm) is GatedRMSNorm) and fused_reason(batch) is None)
