"""M2-style gated Monarch mixing along the sequence axis."""

from __future__ import annotations

import math
from typing import Literal

from composer.costs import Op, linear
from composer.fields import OptionalPositiveInt, PositiveInt, Strict
from composer.kinds.base import Kind, LayerCall
from composer.limits import limit, raise_hint
from composer.problems import Problem


class MonarchMixer(Strict):
    """M2-style gated Monarch mixing along the sequence: y = out(gate * M v), M = P^T L P R per channel group."""

    kind: Literal["monarch"] = "monarch"
    blocks: OptionalPositiveInt = None
    heads: PositiveInt = 1
    causal: bool = False
    gate: bool = True


def default_monarch_blocks(n: int) -> int:
    """The divisor of n closest to sqrt(n) from below: the squarest factorisation n = m1 * m2."""
    return max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)


class Monarch(Kind):
    name, role, fields = "monarch", "sequence", MonarchMixer
    references = {form: f"composer.kernels.monarch.reference:monarch_{form}"
                  for form in ("multiply", "causal", "dense")}

    def resolve(self, m, model, problems):
        if model.max_len > limit("monarch_len"):
            # Checked first: the default factorisation searches divisors up to sqrt(max_len).
            problems.append(Problem(("kind",), f"a Monarch mixer over max_len {model.max_len:,} (one "
                                    f"{model.max_len:,}-square matrix per channel group)", raise_hint("monarch_len")))
            return m
        blocks = m.blocks or default_monarch_blocks(model.max_len)
        if model.max_len % blocks:
            problems.append(Problem(("blocks",), f"blocks {blocks} must divide max_len {model.max_len}: the Monarch "
                                    "matrix factors the sequence length as blocks x (max_len / blocks)",
                                    hint=f"use {default_monarch_blocks(model.max_len)}"))
        if model.d_model % m.heads:
            problems.append(Problem(("heads",), f"heads {m.heads} must divide d_model {model.d_model}"))
        return m.model_copy(update={"blocks": blocks})

    def costs(self, m, model):
        d, m1, m2 = model.d_model, m.blocks, model.max_len // m.blocks
        mix_flops = (2.0 * model.max_len if m.causal else 2.0 * (m1 + m2)) * d  # causal reference: the dense tril
        return [linear("in_proj", d, (2 if m.gate else 1) * d),
                Op("monarch", "monarch", (d,), (d,), m.heads * (m2 * m1 * m1 + m1 * m2 * m2), mix_flops, 0.0),
                linear("out_proj", d, d)]

    def layer(self, m, model):
        return LayerCall("composer.kinds.monarch.layer", "MonarchMixer", dict(
            d_model=model.d_model, max_len=model.max_len, blocks=m.blocks, heads=m.heads, causal=m.causal,
            gate=m.gate))
