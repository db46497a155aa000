"""The delta rule as a sequence mixer: DeltaNet and, with `gate = true`, Gated DeltaNet (Qwen3-Next's
linear-attention layer), S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T.

Value heads (`heads` of `head_dim`) and key heads (`key_heads` of `key_dim`) are counted apart, as
Qwen3-Next's linear_num_value_heads and linear_num_key_heads: each key head serves heads / key_heads
value heads. The forms (recurrent, chunked WY/UT) are in kernels/delta/reference.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from composer.costs import Op, linear
from composer.fields import ChunkLength, OptionalPositiveInt, Strict
from composer.kernels.delta.plan import DeltaSizes, fits, plan_delta
from composer.kernels.plan import LayerKernels
from composer.kinds.base import Kind, LayerCall
from composer.problems import Problem

HeadDim = Annotated[int, Field(ge=1, le=256)]
CHUNKS = (16, 32, 64, 128)  # the WY/UT inverse is Q x Q: past 128 its cubic cost outgrows the chunk's products


class DeltaMixer(Strict):
    """The (gated) delta rule with short convs on q, k, v, L2-normalised q and k and a gated output norm."""

    kind: Literal["delta"] = "delta"
    head_dim: HeadDim = 128                  # value head dim
    heads: OptionalPositiveInt = None        # value heads; default d_model / head_dim
    key_dim: HeadDim | None = None           # default head_dim
    key_heads: OptionalPositiveInt = None    # default heads; must divide heads
    gate: bool = True                        # Gated DeltaNet's data-dependent decay a_t
    beta: Literal["sigmoid", "sigmoid2"] = "sigmoid"   # sigmoid2: 2 sigmoid, eigenvalues down to -1
    conv: Annotated[int, Field(ge=0, le=8)] = 4
    norm: Literal["l2", "none"] = "l2"       # on q and k; without it the state can grow without bound
    out_norm: bool = True                    # the per-head rmsnorm gated by silu(x W_g)
    chunk: ChunkLength = 64


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def delta_flops(heads: int, chunk: int, key_dim: int, value_dim: int) -> tuple[float, float]:
    """(chunked forward per token, one recurrent step) of the delta rule. Per token and head: the chunk's
    K K^T and Q K^T rows (half a chunk each on average), the triangular solve for T (Q^2 / 3 a row) and its
    products with K and V, the written values' and outputs' products with the chunk's values, and three
    K x V products with the state (U's correction, the output's inter-chunk part, the state's update). A
    step: the state's decay, its product with k, the rank-one update and its product with q."""
    K, V, Q = key_dim, value_dim, chunk
    forward = heads * (Q * K + Q * K + Q * Q / 3 + Q * K + Q * V + Q * V + 6.0 * K * V)
    return forward, heads * 7.0 * K * V


class Delta(Kind):
    name, role, fields = "delta", "sequence", DeltaMixer
    references = {form: f"composer.kernels.delta.reference:delta_rule_{form}"
                  for form in ("chunked", "recurrent", "step")}

    def resolve(self, m, model, problems):
        heads = m.heads
        if heads is None:
            if model.d_model % m.head_dim:
                problems.append(Problem(("head_dim",), f"head_dim {m.head_dim} does not divide d_model "
                                        f"{model.d_model}, so the value heads cannot be derived",
                                        hint="set heads, or pick a head_dim that divides d_model"))
                return m
            heads = model.d_model // m.head_dim
        key_heads = m.key_heads or heads
        if heads % key_heads:
            fits = [d for d in _divisors(heads) if d <= key_heads]
            problems.append(Problem(("key_heads",), f"key_heads {key_heads} must divide heads {heads} (each key "
                                    f"head serves the same number of value heads)",
                                    hint=f"use key_heads = {fits[-1]}, or one of {_divisors(heads)}"))
        if m.conv == 1:
            problems.append(Problem(("conv",), "conv 1 is a per-channel scale, not a convolution",
                                    hint="use 0 for no short convolution, or 2 to 8 (4 as Qwen3-Next)"))
        if m.chunk not in CHUNKS:
            problems.append(Problem(("chunk",), f"chunk {m.chunk} must be one of {', '.join(map(str, CHUNKS))}",
                                    hint="use 64, as Gated DeltaNet and Qwen3-Next do"))
        return m.model_copy(update={"heads": heads, "key_heads": key_heads, "key_dim": m.key_dim or m.head_dim})

    def costs(self, m, model):
        d, keys, values = model.d_model, m.key_heads * m.key_dim, m.heads * m.head_dim
        channels = 2 * keys + values
        ops = [linear("q_proj", d, keys), linear("k_proj", d, keys), linear("v_proj", d, values),
               linear("b_proj", d, m.heads)]
        if m.gate:
            ops.append(linear("a_proj", d, m.heads))
        if m.conv:
            ops.append(Op("conv1d", "conv1d", (channels,), (channels,), channels * m.conv, 2.0 * channels * m.conv,
                          2.0 * channels * m.conv, state_bytes=channels * (m.conv - 1) * model.dtype_bytes))
        forward, step = delta_flops(m.heads, m.chunk, m.key_dim, m.head_dim)
        ops.append(Op("scan", "gated_delta_rule" if m.gate else "delta_rule", (channels,), (values,),
                      2 * m.heads if m.gate else 0, forward, step,
                      state_bytes=m.heads * m.key_dim * m.head_dim * 4))
        if m.out_norm:
            ops += [linear("g_proj", d, values),
                    Op("out_norm", "gated_rmsnorm", (values,), (values,), m.head_dim, 5.0 * values, 5.0 * values)]
        return ops + [linear("o_proj", values, d)]

    def layer(self, m, model):
        return LayerCall("composer.kinds.delta.layer", "GatedDeltaNet", dict(
            d_model=model.d_model, heads=m.heads, head_dim=m.head_dim, key_heads=m.key_heads, key_dim=m.key_dim,
            gate=m.gate, beta=m.beta, conv=m.conv, norm=m.norm, out_norm=m.out_norm, chunk=m.chunk,
            eps=model.norm_eps))

    def kernels(self, m, target):
        reason = fits(m.key_dim, m.head_dim, m.chunk)
        if reason is not None:
            return LayerKernels.reference(reason, reason.split(" ", 1)[0])
        plan = plan_delta(DeltaSizes(m.key_dim, m.head_dim, m.chunk, m.heads, m.key_heads, m.gate), gpu=target.on_gpu)
        return LayerKernels("generated", "the generated chunked delta-rule kernels (WY/UT)",
                            tuple(plan.calls(target.precision, target.mode)), plan)

    def layer_type(self, m):
        return "linear_attention"  # transformers' word for Qwen3-Next's Gated DeltaNet layers

    def summary(self, m):
        return f"{'gated ' if m.gate else ''}delta rule sequence mixer"
