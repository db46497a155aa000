"""The dense MLP channel mixer."""

from __future__ import annotations

from typing import Literal

from composer.costs import linear
from composer.fields import OptionalPositiveInt, Strict
from composer.kinds.base import Kind, LayerCall

Activation = Literal["gelu", "relu", "silu"]


class MLPChannel(Strict):
    kind: Literal["mlp"] = "mlp"
    hidden: OptionalPositiveInt = None  # 4 * d_model
    activation: Activation = "gelu"
    bias: bool = False


class MLP(Kind):
    name, role, fields = "mlp", "channel", MLPChannel

    def resolve(self, c, model, problems):
        return c.model_copy(update={"hidden": c.hidden or 4 * model.d_model})

    def costs(self, c, model):
        return [linear("fc1", model.d_model, c.hidden, c.bias), linear("fc2", c.hidden, model.d_model, c.bias)]

    def layer(self, c, model):
        return LayerCall("composer.kinds.mlp.layer", "MLP", dict(d_model=model.d_model, hidden=c.hidden,
                                                                 activation=c.activation, bias=c.bias))
