"""Softmax attention: grouped-query heads, rotary positions, an optional sliding window."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from composer.costs import Op, linear
from composer.fields import OptionalPositiveInt, PositiveInt, Strict
from composer.kernels.attention.decode_plan import AttentionDecodePlan, decode_constants, fits
from composer.kernels.plan import LayerKernels
from composer.kinds.base import Kind, LayerCall
from composer.problems import Problem


class AttentionMixer(Strict):
    """Softmax attention; head_dim defaults to d_model / heads, kv_heads to heads (GQA when fewer)."""

    kind: Literal["attention"] = "attention"
    heads: PositiveInt
    kv_heads: OptionalPositiveInt = None
    head_dim: OptionalPositiveInt = None
    causal: bool = True
    window: OptionalPositiveInt = None
    rope: bool = True
    rope_base: Annotated[float, Field(gt=0)] = 10000.0
    bias: bool = False


class Attention(Kind):
    name, role, fields, attention = "attention", "sequence", AttentionMixer, True
    references = {form: f"composer.kernels.attention.reference:attention_{form}"
                  for form in ("quadratic", "sdpa", "step")}

    def resolve(self, m, model, problems):
        head_dim = m.head_dim
        if head_dim is None:
            if model.d_model % m.heads:
                problems.append(Problem(("heads",), f"heads {m.heads} does not divide d_model {model.d_model}",
                                        hint="set head_dim explicitly, or pick heads dividing d_model"))
                return m
            head_dim = model.d_model // m.heads
        kv_heads = m.kv_heads or m.heads
        if m.heads % kv_heads:
            problems.append(Problem(("kv_heads",), f"kv_heads {kv_heads} must divide heads {m.heads} "
                                    "(grouped-query attention)"))
        if m.rope and head_dim % 2:
            problems.append(Problem(("head_dim",), f"rope needs an even head_dim, got {head_dim}"))
        if m.window is not None:
            if not m.causal:
                problems.append(Problem(("window",), "a sliding window needs causal = true"))
            if m.window >= model.max_len:
                problems.append(Problem(("window",), f"window {m.window} must be smaller than max_len "
                                        f"{model.max_len}", hint="drop the window to attend to the whole context"))
        return m.model_copy(update={"head_dim": head_dim, "kv_heads": kv_heads})

    def costs(self, m, model):
        d, q, kv = model.d_model, m.heads * m.head_dim, m.kv_heads * m.head_dim
        context = min(m.window, model.max_len) if m.window else model.max_len
        mean_context = context / 2 if m.causal and not m.window else context  # causal: on average half the keys
        core = 4.0 * m.heads * m.head_dim * mean_context  # QK^T and PV
        return [linear("q_proj", d, q, m.bias), linear("k_proj", d, kv, m.bias), linear("v_proj", d, kv, m.bias),
                Op("attention", "attention", (q + 2 * kv,), (q,), 0, core, 4.0 * m.heads * m.head_dim * context,
                   kv_bytes=2 * kv * model.dtype_bytes),
                linear("o_proj", q, d, m.bias)]

    def layer_type(self, m):
        return "sliding_attention" if m.window else "full_attention"

    def kernels(self, m, target):
        """A causal layer's decoding step reads its cache in generated kernels (split-KV); its prefill and
        training run torch's SDPA (flash attention on a GPU), as non-causal attention always does."""
        if not m.causal:
            return LayerKernels.torch("non-causal attention has no decoding step; torch's SDPA runs it")
        reason = fits(m.head_dim)
        if reason is not None:
            return LayerKernels.reference(f"its decoding step: {reason}", "head_dim")
        plan = AttentionDecodePlan(decode_constants(m.head_dim, m.heads, m.kv_heads))
        return LayerKernels("generated", "the generated decoding step (split-KV over the cache); prefill and "
                            "training on torch's SDPA", tuple(plan.calls()), plan)

    def build_bytes(self, m, model):
        # rope's cos and sin tables, (max_len, head_dim / 2) each in fp32, computed from fp64 angles.
        return model.max_len * (m.head_dim // 2) * (2 * 4 + 3 * 8) if m.rope else 0

    def layer(self, m, model):
        return LayerCall("composer.kinds.attention.layer", "Attention", dict(
            d_model=model.d_model, heads=m.heads, kv_heads=m.kv_heads, head_dim=m.head_dim, max_len=model.max_len,
            causal=m.causal, window=m.window, rope=m.rope, rope_base=m.rope_base, bias=m.bias))

