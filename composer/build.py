"""Spec -> torch.nn.Module, through the rendered module source (codegen)."""

from __future__ import annotations

import torch
from torch import nn

from composer.codegen.cache import load_source
from composer.codegen.model_source import render_model_source
from composer.resolve import resolve
from composer.spec import Spec

BACKENDS = ("auto", "reference")


def model_source(spec: Spec, origin: str | None = None) -> str:
    """The Python source of the spec's module: what `build` runs and `export` will write."""
    return render_model_source(resolve(spec), origin)


def build(spec: Spec, backend: str = "auto", device: str | torch.device | None = None,
          dtype: torch.dtype | None = None) -> nn.Module:
    """A freshly initialised module for `spec`. Parameters are fp32 unless `dtype` says otherwise.

    backend "reference" runs the plain-PyTorch definitions everywhere; "auto" will pick
    generated kernels on CUDA tensors once they exist, the reference elsewhere.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    module = load_source(model_source(spec), f"composer_model_{spec.name}")
    model = module.make_model()
    return model.to(device=device, dtype=dtype) if (device or dtype) else model
