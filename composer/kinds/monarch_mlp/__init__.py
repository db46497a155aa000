"""The Monarch MLP channel mixer of M2."""

from __future__ import annotations

from typing import Literal

from composer.costs import Op
from composer.fields import OptionalPositiveInt, PositiveInt, Strict
from composer.kinds.base import Kind, LayerCall
from composer.kinds.mlp import Activation
from composer.problems import Problem


class MonarchMLPChannel(Strict):
    """An MLP whose two dense maps are Monarch matrices with `blocks` diagonal blocks each (M2)."""

    kind: Literal["monarch_mlp"] = "monarch_mlp"
    hidden: OptionalPositiveInt = None  # 4 * d_model
    blocks: PositiveInt = 4
    activation: Activation = "gelu"
    bias: bool = True


class MonarchMLP(Kind):
    name, role, fields = "monarch_mlp", "channel", MonarchMLPChannel

    def resolve(self, c, model, problems):
        hidden = c.hidden or 4 * model.d_model
        for name, width in (("d_model", model.d_model), ("hidden", hidden)):
            if width % c.blocks:
                problems.append(Problem(("blocks",), f"blocks {c.blocks} must divide {name} {width}"))
        return c.model_copy(update={"hidden": hidden})

    def costs(self, c, model):
        def monarch_linear(name: str, d_in: int, d_out: int) -> Op:
            params = d_in * d_out // c.blocks + d_out * d_out // c.blocks + (d_out if c.bias else 0)
            flops = 2.0 * (d_in * d_out + d_out * d_out) / c.blocks
            return Op(name, "monarch_linear", (d_in,), (d_out,), params, flops, flops)
        return [monarch_linear("fc1", model.d_model, c.hidden), monarch_linear("fc2", c.hidden, model.d_model)]

    def layer(self, c, model):
        return LayerCall("composer.kinds.monarch_mlp.layer", "MonarchMLP", dict(
            d_model=model.d_model, hidden=c.hidden, blocks=c.blocks, activation=c.activation, bias=c.bias))
