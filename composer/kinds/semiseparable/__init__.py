"""Mamba-2 SSD: the semiseparable mixer, y = SSD(x dt, dt A, B, C) + D x, gated and normed.

Its kernels are the SSD family's (kernels/semiseparable): this kind says which sizes and flags a layer
hands them, and plans them with `kernels.semiseparable.plan`.
"""

from __future__ import annotations

import dataclasses

from typing import Annotated, Literal

from pydantic import Field

from composer.costs import Op, linear, scan_flops
from composer.fields import ChunkLength, Expand, OptionalPositiveInt, PositiveInt, Strict
from composer.kernels.norms.plan import TEMPLATE as NORM_TEMPLATE
from composer.kernels.norms.plan import norm_constants
from composer.kernels.plan import KernelCall, LayerKernels, Target
from composer.kernels.semiseparable.decode_plan import DecodingLayerPlan, decode_constants
from composer.kernels.semiseparable.plan import (ScanLayerPlan, ScanSizes, fits, is_tile_size, misfits,
                                                 nearest_tile_sizes, plan_scan, scan_calls)
from composer.kinds.base import Kind, LayerCall
from composer.problems import Problem


class StateSpaceFields(Strict):
    """What Mamba-2 SSD and Hydra share: d_inner = expand * d_model, heads = d_inner / head_dim."""

    state: Annotated[int, Field(ge=1, le=256)] = 128
    head_dim: Annotated[int, Field(ge=1, le=256)] = 64
    heads: OptionalPositiveInt = None
    expand: Expand = 2
    groups: PositiveInt = 1
    chunk: ChunkLength = 256
    conv: Annotated[int, Field(ge=0, le=8)] = 4
    gate: bool = True
    out_norm: bool = True
    skip: bool = True
    bias: bool = False


class SemiseparableMixer(StateSpaceFields):
    """Mamba-2 SSD: decay `data` (a_t = exp(dt_t A)), `fixed` (one learned decay per head, RetNet) or `none`."""

    kind: Literal["semiseparable"] = "semiseparable"
    decay: Literal["none", "fixed", "data"] = "data"


def inner_heads(m, d_model: int, problems: list[Problem]) -> tuple[int, int]:
    """(inner width, heads) for mixers with d_inner = expand * d_model split into head_dim heads."""
    inner = m.expand * d_model
    if inner != int(inner):
        problems.append(Problem(("expand",), f"expand {m.expand} times d_model {d_model} is not a whole width"))
        return 0, 0
    inner = int(inner)
    if m.heads is not None:
        if m.heads * m.head_dim != inner:
            problems.append(Problem(("heads",), f"heads {m.heads} x head_dim {m.head_dim} must equal "
                                    f"expand x d_model = {inner}",
                                    hint=f"leave heads out to derive it, or set head_dim = {inner // m.heads}"))
        return inner, m.heads
    if inner % m.head_dim:
        problems.append(Problem(("head_dim",), f"head_dim {m.head_dim} does not divide the inner width "
                                f"{inner} (expand x d_model)", hint="pick a head_dim that divides it, e.g. 64"))
        return inner, 0
    return inner, inner // m.head_dim


def check_chunk(chunk: int, problems: list[Problem]) -> None:
    """Chunks are tiles of the scan in every form (the reference's too): the kernels' tile rule, up to 512."""
    if not (is_tile_size(chunk) and chunk <= 512):
        problems.append(Problem(("chunk",), f"chunk {chunk} must be a power of two from 16 to 512",
                                hint="use 64, 128 or 256"))


def resolve_state_space(m, model, problems: list[Problem]):
    _, heads = inner_heads(m, model.d_model, problems)
    if heads and heads % m.groups:
        problems.append(Problem(("groups",), f"groups {m.groups} must divide heads {heads}"))
    if m.conv == 1:
        problems.append(Problem(("conv",), "conv 1 is a per-channel scale, not a convolution",
                                hint="use 0 for no short convolution, or 2 to 8"))
    check_chunk(m.chunk, problems)
    return m.model_copy(update={"heads": heads or m.heads})


def state_space_ops(m, model, directions: int, decay: str) -> list[Op]:
    """The ops of a Mamba-2 (one direction) or Hydra (two) layer with decay `none`, `fixed` or `data`."""
    data_decay = decay == "data"
    d, inner, bc = model.d_model, m.heads * m.head_dim, directions * 2 * m.groups * m.state
    dt = directions * m.heads if data_decay else 0
    proj_out = (inner if m.gate else 0) + inner + bc + dt
    ops = [linear("in_proj", d, proj_out, m.bias)]
    if m.conv:
        channels = inner + bc
        ops.append(Op("conv1d", "conv1d", (channels,), (channels,), channels * m.conv + channels,
                      2.0 * channels * m.conv, 2.0 * channels * m.conv,
                      state_bytes=channels * (m.conv - 1) * model.dtype_bytes))
    decay_params = 2 * m.heads if data_decay else m.heads if decay == "fixed" else 0
    forward, step = scan_flops(m.heads, m.chunk, m.head_dim, m.state)
    scan_params = decay_params + (m.heads if m.skip else 0) + (inner * m.heads if directions == 2 else 0)
    ops.append(Op("scan", "ssd_scan" if directions == 1 else "quasiseparable_scan", (inner + bc + dt,), (inner,),
                  scan_params, directions * forward, directions * step,
                  state_bytes=directions * m.heads * m.head_dim * m.state * 4))
    if m.out_norm:
        ops.append(Op("out_norm", "gated_rmsnorm" if m.gate else "rmsnorm", (inner,), (inner,), inner,
                      5.0 * inner, 5.0 * inner))
    ops.append(linear("out_proj", inner, d, m.bias))
    return ops


def state_space_kernels(m, target: Target, decays: bool, has_dt: bool, has_D: bool,
                        decodes: bool = False) -> LayerKernels:
    """The scan's plan, and the gated output norm's (which takes any width, so it runs generated whatever
    keeps the scan off the kernels), for one state-space layer; `decodes`: also the prefill's plan, the scan
    continuing a cached state (state in and out, the skip added outside)."""
    norm = norm_constants(m.heads * m.head_dim, m.gate) if m.out_norm else None
    norm_calls = [KernelCall(NORM_TEMPLATE, tuple(sorted(norm.items())))] if norm is not None else []
    reason = fits(m.head_dim, m.state, m.chunk)
    if reason is not None:
        field = misfits(m.head_dim, m.state, m.chunk)[0]
        return LayerKernels("reference", f"{reason}; {field} {nearest_tile_sizes(getattr(m, field))} would fit",
                            tuple(norm_calls), ScanLayerPlan((), norm), field)
    sizes = ScanSizes(m.head_dim, m.state, m.chunk, m.heads, m.groups, decays, has_dt, has_D)
    scan = plan_scan(sizes, target.multiprocessors, gpu=target.gpu)
    prefill = (plan_scan(dataclasses.replace(sizes, has_D=False, initial_state=True, final_state=True),
                         target.multiprocessors, gpu=target.gpu),) if decodes else ()
    calls = scan_calls(scan, target.precision, target.mode == "train") + norm_calls
    if decodes and m.conv > 1:  # a Mamba-2 layer: its decoding step runs fused (decode_plan.py)
        decode = decode_constants(m.head_dim, m.state, m.heads, m.groups, m.conv, m.gate, m.decay, m.skip)
        entry = DecodingLayerPlan((scan,), norm, prefill, decode)
    else:
        entry = ScanLayerPlan((scan,), norm, prefill)
    return LayerKernels("generated", "the generated SSD kernels", tuple(calls), entry)


class Semiseparable(Kind):
    name, role, fields = "semiseparable", "sequence", SemiseparableMixer
    references = {form: f"composer.kernels.semiseparable.reference:ssd_{form}"
                  for form in ("quadratic", "chunked", "recurrent", "step")}

    def resolve(self, m, model, problems):
        return resolve_state_space(m, model, problems)

    def costs(self, m, model):
        return state_space_ops(m, model, directions=1, decay=m.decay)

    def layer_type(self, m):
        return "linear_attention"  # transformers' word for a linear-time mixer in a hybrid (qwen3_next)

    def layer(self, m, model):
        return LayerCall("composer.kinds.semiseparable.layer", "Mamba2", dict(
            d_model=model.d_model, heads=m.heads, head_dim=m.head_dim, state=m.state, groups=m.groups,
            chunk=m.chunk, conv=m.conv, decay=m.decay, gate=m.gate, out_norm=m.out_norm, skip=m.skip,
            bias=m.bias, eps=model.norm_eps))

    def kernels(self, m, target):
        return state_space_kernels(m, target, decays=m.decay != "none", has_dt=m.decay == "data", has_D=m.skip,
                                   decodes=True)
