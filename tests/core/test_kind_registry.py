"""A mixer kind added from outside composer, with no composer file changed: its folder is this test file.

It is checked, planned, built and trained like a built-in kind, and removing it leaves the spec language
as it was.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
import torch
from pydantic import Field
from torch import nn

import composer
from composer.costs import Op, linear
from composer.fields import Strict
from composer.grammar.errors import SpecError
from composer.kinds import Kind, LayerCall, kind_of, register, unregister
from composer.problems import Problem


class ToyConvMixer(Strict):
    """A causal depthwise convolution over the sequence between two projections."""

    kind: Literal["toy_conv"] = "toy_conv"
    width: Annotated[int, Field(ge=1, le=16)] = 4


class ToyConvLayer(nn.Module):
    def __init__(self, d_model: int, width: int):
        super().__init__()
        self.in_proj = nn.Linear(d_model, d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, width, groups=d_model, padding=width - 1)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.in_proj(x).transpose(1, 2))[..., : x.shape[1]]
        return self.out_proj(torch.nn.functional.silu(h.transpose(1, 2)))


class ToyConv(Kind):
    name, role, fields = "toy_conv", "sequence", ToyConvMixer

    def resolve(self, m, model, problems):
        if m.width > model.max_len:
            problems.append(Problem(("width",), f"width {m.width} is longer than max_len {model.max_len}"))
        return m

    def costs(self, m, model):
        d = model.d_model
        conv = Op("conv", "conv1d", (d,), (d,), d * m.width + d, 2.0 * d * m.width, 2.0 * d * m.width,
                  state_bytes=d * (m.width - 1) * model.dtype_bytes)
        return [linear("in_proj", d, d), conv, linear("out_proj", d, d)]

    def layer(self, m, model):
        return LayerCall(__name__, "ToyConvLayer", dict(d_model=model.d_model, width=m.width))


SPEC = """
model toy {
  d_model = 32
  vocab = 16
  max_len = 8
  block conv {
    mixer = toy_conv(width = 3)
    channel = swiglu
  }
  block wide extends conv { width = 6 }
  layers = [conv, wide]
}
"""


@pytest.fixture
def toy_kind():
    kind = register(ToyConv())
    yield kind
    unregister("sequence", "toy_conv")


def test_a_kind_registered_from_outside_is_checked_planned_built_and_trained(toy_kind):
    spec = composer.loads(SPEC)
    assert kind_of(spec.blocks["wide"].mixer) is toy_kind and spec.blocks["wide"].mixer.width == 6
    plan = composer.plan(spec)
    assert [row.mixer for row in plan.layers] == ["toy_conv", "toy_conv"]
    assert plan.layers[0].kernels.path == "torch"
    assert plan.total("state_bytes") == 32 * (2 + 5) * 2  # bf16 conv state of both layers
    torch.manual_seed(0)
    model = composer.build(spec)
    assert sum(p.numel() for p in model.parameters()) == plan.params
    assert "ToyConvLayer(d_model=32, width=6)" in composer.model_source(spec)

    tokens = torch.randint(0, 16, (8, 8))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = model(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_a_registered_kind_reports_its_own_problems_at_their_line(toy_kind):
    with pytest.raises(SpecError) as error:
        composer.loads(SPEC.replace("width = 6", "width = 9"))
    text = error.value.render()
    assert "width 9 is longer than max_len 8" in text and ":10:37:" in text  # where it was written


def test_a_misspelt_kind_suggests_a_registered_one(toy_kind):
    with pytest.raises(SpecError, match="did you mean `toy_conv`"):
        composer.loads(SPEC.replace("toy_conv(", "toy_cnov("))


def test_unregistering_a_kind_takes_it_out_of_the_spec_language():
    register(ToyConv())
    unregister("sequence", "toy_conv")
    with pytest.raises(SpecError, match="unknown mixer kind `toy_conv`"):
        composer.loads(SPEC)
