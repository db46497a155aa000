"""Spec -> torch.nn.Module, through the rendered module source (codegen)."""

from __future__ import annotations

import torch
from torch import nn

from composer.codegen.cache import load_source
from composer.codegen.model_source import render_model_source
from composer.codegen.kernel_plan import kernel_sizes
from composer.kernels.semiseparable.tiles import triton_supports
from composer.resolve import resolve
from composer.spec import LowrankMixer, Spec

BACKENDS = ("auto", "reference", "triton")


def model_source(spec: Spec, origin: str | None = None) -> str:
    """The Python source of the spec's module: what `build` runs and `export` will write."""
    return render_model_source(resolve(spec), origin)


def build(spec: Spec, backend: str = "auto", device: str | torch.device | None = None,
          dtype: torch.dtype | None = None) -> nn.Module:
    """A freshly initialised module for `spec`. Parameters are fp32 unless `dtype` says otherwise.

    backend "reference" runs the plain-PyTorch definitions everywhere; "triton" runs the generated
    kernels of the families that have them (semiseparable, quasiseparable, lowrank, and the state-space
    layers' gated output norm) on any device (on a CPU, only under TRITON_INTERPRET=1); "auto" uses
    them on CUDA tensors where their sizes fit.
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
        sizes = kernel_sizes(mixer)
        if sizes is None or triton_supports(*sizes):
            continue
        head_dim, state, chunk = sizes
        what, got = "state", str(state)
        if isinstance(mixer, LowrankMixer):
            what, got = "the mapped feature dim", f"{state} from {mixer.feature_map}({mixer.feature_dim})"
        raise ValueError(f"block `{name}`: backend 'triton' needs head_dim, {what} and chunk to be powers of two "
                         f">= 16 (got {head_dim}, {got}, {chunk}); use backend 'auto'")
