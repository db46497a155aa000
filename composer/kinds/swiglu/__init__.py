"""The SwiGLU channel mixer."""

from __future__ import annotations

import math
from typing import Literal

from composer.costs import linear
from composer.fields import OptionalPositiveInt, Strict
from composer.kinds.base import Kind, LayerCall


class SwiGLUChannel(Strict):
    kind: Literal["swiglu"] = "swiglu"
    hidden: OptionalPositiveInt = None  # 8/3 * d_model rounded up to a multiple of 64
    bias: bool = False


class SwiGLU(Kind):
    name, role, fields = "swiglu", "channel", SwiGLUChannel

    def resolve(self, c, model, problems):
        return c.model_copy(update={"hidden": c.hidden or int(math.ceil(8 * model.d_model / 3 / 64) * 64)})

    def costs(self, c, model):
        d = model.d_model
        return [linear("gate_proj", d, c.hidden, c.bias), linear("up_proj", d, c.hidden, c.bias),
                linear("down_proj", c.hidden, d, c.bias)]

    def layer(self, c, model):
        return LayerCall("composer.kinds.swiglu.layer", "SwiGLU", dict(d_model=model.d_model, hidden=c.hidden,
                                                                       bias=c.bias))
