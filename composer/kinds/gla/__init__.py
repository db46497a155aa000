"""Gated linear attention (GLA): a state decayed per key channel by a data-dependent low-rank gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from typing_extensions import Annotated

from composer.costs import Op, linear
from composer.fields import ChunkLength, Expand, OptionalPositiveInt, PositiveInt, Strict
from composer.kernels.gla.plan import GLASizes, fits, misfit, plan_gla
from composer.kernels.plan import LayerKernels
from composer.kinds.base import Kind, LayerCall
from composer.kinds.semiseparable import check_chunk, inner_heads
from composer.problems import Problem

GateNormalizer = Annotated[float, Field(ge=1, le=1024)]


class GLAMixer(Strict):
    """GLA: heads of `head_dim` values (derived from expand x d_model when left out) and `key_dim` keys (GLA's
    half the value dim by default); the decay's low-rank gate of `gate_rank`, its logits divided by
    `gate_normalizer`; a swish output gate with `output_gate`."""

    kind: Literal["gla"] = "gla"
    heads: OptionalPositiveInt = None
    head_dim: PositiveInt = 64
    key_dim: OptionalPositiveInt = None
    expand: Expand = 1
    gate_rank: PositiveInt = 16
    gate_normalizer: GateNormalizer = 16.0
    output_gate: bool = True
    chunk: ChunkLength = 64


class GLA(Kind):
    name, role, fields = "gla", "sequence", GLAMixer
    references = {form: f"composer.kernels.gla.reference:gla_{form}" for form in ("recurrent", "chunked", "step")}

    def layer_type(self, m):
        return "linear_attention"

    def resolve(self, m, model, problems):
        _, heads = inner_heads(m, model.d_model, problems)
        key_dim = m.key_dim or max(1, m.head_dim // 2)
        if m.gate_rank > model.d_model:
            problems.append(Problem(("gate_rank",), f"gate_rank {m.gate_rank} exceeds d_model {model.d_model}: "
                                    "the gate is a low-rank map", hint="use 16 (GLA's)"))
        check_chunk(m.chunk, problems)
        return m.model_copy(update={"heads": heads or m.heads, "key_dim": key_dim})

    def costs(self, m, model):
        d, keys, values = model.d_model, m.heads * m.key_dim, m.heads * m.head_dim
        # per token and head: the intra-chunk scores and their product with v over half a chunk on average, the
        # chunk's state read into the output and the token's update of it; a step reads and writes the state
        forward = m.heads * (m.chunk * (m.key_dim + m.head_dim) + 4.0 * m.key_dim * m.head_dim)
        step = m.heads * 4.0 * m.key_dim * m.head_dim
        ops = [linear("q_proj", d, keys), linear("k_proj", d, keys), linear("v_proj", d, values),
               linear("gate_down", d, m.gate_rank), linear("gate_up", m.gate_rank, keys, bias=True),
               Op("scan", "gated_linear_attention", (2 * keys + values,), (values,), m.head_dim, forward, step,
                  state_bytes=m.heads * m.key_dim * m.head_dim * 4)]
        if m.output_gate:
            ops.append(linear("g_proj", d, values))
        return ops + [linear("o_proj", values, d)]

    def layer(self, m, model):
        return LayerCall("composer.kinds.gla.layer", "GatedLinearAttention", dict(
            d_model=model.d_model, heads=m.heads, head_dim=m.head_dim, key_dim=m.key_dim, gate_rank=m.gate_rank,
            gate_normalizer=m.gate_normalizer, output_gate=m.output_gate, chunk=m.chunk, eps=model.norm_eps))

    def kernels(self, m, target):
        reason = fits(m.key_dim, m.head_dim, m.chunk, gpu=target.on_gpu)
        if reason is not None:
            return LayerKernels.reference(reason, misfit(m.key_dim, m.head_dim, m.chunk) or "key_dim")
        plan = plan_gla(GLASizes(m.key_dim, m.head_dim, m.chunk, m.heads))
        return LayerKernels("generated", "the generated chunked GLA kernels (sub-chunks in log space)",
                            tuple(plan.calls(target.precision, target.mode)), plan)

    def summary(self, m):
        return f"gated linear attention, {m.heads} heads of {m.key_dim} keys x {m.head_dim} values"
