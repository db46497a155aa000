"""Spec -> torch.nn.Module, through the rendered module source (codegen)."""

from __future__ import annotations

import torch
from torch import nn

from composer.codegen.cache import load_source
from composer.codegen.model_source import render_model_source
from composer.kernels.lowrank.reference import feature_dim_out
from composer.layers.state_space import triton_supports
from composer.resolve import resolve
from composer.spec import LowrankMixer, QuasiseparableMixer, SemiseparableMixer, Spec

BACKENDS = ("auto", "reference", "triton")


def model_source(spec: Spec, origin: str | None = None) -> str:
    """The Python source of the spec's module: what `build` runs and `export` will write."""
    return render_model_source(resolve(spec), origin)


def build(spec: Spec, backend: str = "auto", device: str | torch.device | None = None,
          dtype: torch.dtype | None = None) -> nn.Module:
    """A freshly initialised module for `spec`. Parameters are fp32 unless `dtype` says otherwise.

    backend "reference" runs the plain-PyTorch definitions everywhere; "triton" runs the generated
    kernels of the families that have them (semiseparable, quasiseparable, lowrank) on any device (on a CPU,
    only under TRITON_INTERPRET=1); "auto" uses them on CUDA tensors where their sizes fit.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    resolved = resolve(spec)
    if backend == "triton":
        _check_triton_sizes(resolved)
    module = load_source(render_model_source(resolved), f"composer_model_{spec.name}")
    model = module.make_model()
    for layer in model.modules():
        if hasattr(layer, "backend"):
            layer.backend = backend
    return model.to(device=device, dtype=dtype) if (device or dtype) else model


def _check_triton_sizes(spec: Spec) -> None:
    for name, block in spec.blocks.items():
        mixer = block.mixer
        if isinstance(mixer, (SemiseparableMixer, QuasiseparableMixer)) and not triton_supports(
                mixer.head_dim, mixer.state, mixer.chunk):
            raise ValueError(f"block `{name}`: backend 'triton' needs head_dim, state and chunk to be powers of "
                             f"two >= 16 (got {mixer.head_dim}, {mixer.state}, {mixer.chunk}); use backend 'auto'")
        if isinstance(mixer, LowrankMixer):
            features = feature_dim_out(mixer.feature_map, mixer.feature_dim)
            if not triton_supports(mixer.head_dim, features, mixer.chunk):
                raise ValueError(f"block `{name}`: backend 'triton' needs head_dim, the mapped feature dim and chunk "
                                 f"to be powers of two >= 16 (got {mixer.head_dim}, {features} from "
                                 f"{mixer.feature_map}({mixer.feature_dim}), {mixer.chunk}); use backend 'auto'")
