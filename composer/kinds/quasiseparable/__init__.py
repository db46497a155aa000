"""Hydra: the quasiseparable mixer, a forward and a reversed semiseparable half plus a diagonal."""

from __future__ import annotations

from typing import Literal

from composer.kinds.base import Kind, LayerCall
from composer.kinds.semiseparable import StateSpaceFields, resolve_state_space, state_space_kernels, state_space_ops


class QuasiseparableMixer(StateSpaceFields):
    """Hydra: a forward and a reversed semiseparable half plus a diagonal; bidirectional."""

    kind: Literal["quasiseparable"] = "quasiseparable"


class Quasiseparable(Kind):
    name, role, fields = "quasiseparable", "sequence", QuasiseparableMixer
    references = {form: f"composer.kernels.quasiseparable.reference:qs_{form}" for form in ("quadratic", "chunked")}

    def resolve(self, m, model, problems):
        return resolve_state_space(m, model, problems)

    def costs(self, m, model):
        return state_space_ops(m, model, directions=2, decay="data")

    def layer_type(self, m):
        return "linear_attention"  # a bidirectional SSM: linear in the length, as transformers' word says

    def layer(self, m, model):
        return LayerCall("composer.kinds.quasiseparable.layer", "Hydra", dict(
            d_model=model.d_model, heads=m.heads, head_dim=m.head_dim, state=m.state, groups=m.groups,
            chunk=m.chunk, conv=m.conv, gate=m.gate, out_norm=m.out_norm, skip=m.skip, bias=m.bias,
            eps=model.norm_eps))

    def kernels(self, m, target):
        # Each half scales x by its own dt inside the scan; the skip D joins the diagonal outside it.
        return state_space_kernels(m, target, decays=True, has_dt=True, has_D=False)
