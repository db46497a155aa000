"""Linear attention, phi(Q) phi(K)^T V, on the SSD kernels with one group per head."""

from __future__ import annotations

from typing import Literal

from composer.costs import Op, linear, scan_flops
from composer.fields import ChunkLength, Expand, OptionalPositiveInt, PositiveInt, Strict
from composer.kernels.lowrank.plan import plan_linear_attention
from composer.kernels.lowrank.reference import feature_dim_out
from composer.kernels.plan import LayerKernels
from composer.kernels.semiseparable.plan import ScanLayerPlan, fits, misfits, scan_calls
from composer.kinds.base import Kind, LayerCall
from composer.kinds.semiseparable import check_chunk, inner_heads
from composer.problems import Problem

MAX_TAYLOR_FEATURE_DIM = 32  # the Taylor map squares it: 1 + f + f^2 features


class LowrankMixer(Strict):
    """Linear attention phi(Q) phi(K)^T V; decay `fixed` gives a RetNet-style per-head decay."""

    kind: Literal["lowrank"] = "lowrank"
    heads: OptionalPositiveInt = None
    head_dim: PositiveInt = 64
    feature_dim: OptionalPositiveInt = None
    feature_map: Literal["elu", "relu", "identity", "taylor", "softmax"] = "elu"
    expand: Expand = 1
    causal: bool = True
    normalize: bool = True
    decay: Literal["none", "fixed"] = "none"
    chunk: ChunkLength = 64


class Lowrank(Kind):
    name, role, fields = "lowrank", "sequence", LowrankMixer
    references = {form: f"composer.kernels.lowrank.reference:linear_attention_{form}"
                  for form in ("quadratic", "chunked", "recurrent", "step")}

    def layer_type(self, m):
        return "linear_attention"

    def resolve(self, m, model, problems):
        _, heads = inner_heads(m, model.d_model, problems)
        feature_dim = m.feature_dim or (16 if m.feature_map == "taylor" else m.head_dim)
        if m.feature_map == "taylor" and feature_dim > MAX_TAYLOR_FEATURE_DIM:
            problems.append(Problem(("feature_dim",), f"the taylor map squares feature_dim: {feature_dim} gives "
                                    f"{1 + feature_dim + feature_dim ** 2} features", hint="use 16 (Based) or less"))
        if not m.causal and m.decay != "none":
            problems.append(Problem(("decay",), "decay needs causal = true (it weights the past)"))
        check_chunk(m.chunk, problems)
        return m.model_copy(update={"heads": heads or m.heads, "feature_dim": feature_dim})

    def costs(self, m, model):
        d, qk, v = model.d_model, m.heads * m.feature_dim, m.heads * m.head_dim
        mapped = feature_dim_out(m.feature_map, m.feature_dim)
        values = m.head_dim + (1 if m.normalize else 0)
        forward, step = scan_flops(m.heads, m.chunk, values, mapped)
        return [linear("q_proj", d, qk), linear("k_proj", d, qk), linear("v_proj", d, v),
                Op("scan", "linear_attention", (2 * qk + v,), (v,), 0, forward, step,
                   state_bytes=m.heads * values * mapped * 4),
                linear("o_proj", v, d)]

    def layer(self, m, model):
        return LayerCall("composer.kinds.lowrank.layer", "LinearAttention", dict(
            d_model=model.d_model, heads=m.heads, head_dim=m.head_dim, feature_dim=m.feature_dim,
            feature_map=m.feature_map, causal=m.causal, normalize=m.normalize, decay=m.decay, chunk=m.chunk))

    def kernels(self, m, target):
        mapped = feature_dim_out(m.feature_map, m.feature_dim)
        reason = fits(m.head_dim, mapped, m.chunk)
        if reason is not None:
            misfit = misfits(m.head_dim, mapped, m.chunk)[0]
            field = "feature_dim" if misfit == "state" else misfit
            return LayerKernels.reference(reason.replace(f"state {mapped}", f"mapped feature dim {mapped} from "
                                                         f"{m.feature_map}({m.feature_dim})"), field)
        if not m.causal:
            return LayerKernels.torch("non-causal: every query reads the state after the whole sequence, one "
                                      "product with no scan")
        values, normaliser = plan_linear_attention(m.head_dim, mapped, m.chunk, m.heads, m.decay == "fixed",
                                                   m.normalize, target.multiprocessors, target.gpu)
        calls = []
        for scan in (values, normaliser):
            for call in scan_calls(scan, target.precision, target.mode == "train") if scan else ():
                if call not in calls:  # a head dim of 16 makes the two scans one
                    calls.append(call)
        return LayerKernels("generated", "the generated SSD kernels, one group per head", tuple(calls),
                            ScanLayerPlan((values, normaliser)))
