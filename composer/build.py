"""Spec -> torch.nn.Module, through the rendered module source (codegen), with each layer handed the
kernels its plan decided."""

from __future__ import annotations

import torch
from torch import nn

from composer.codegen.cache import load_source
from composer.codegen.model_source import render_model_source
from composer.kernels.plan import LayerKernels, Target
from composer.grammar.errors import SpecError
from composer.limits import limit, raise_hint
from composer.planner import block_kernels, planned_build_bytes, planned_params
from composer.resolve import resolve
from composer.spec import Spec

BACKENDS = ("auto", "reference", "triton")


def model_source(spec: Spec, origin: str | None = None) -> str:
    """The Python source of the spec's module: what `build` runs and `export` will write."""
    return render_model_source(resolve(spec), origin)


def build(spec: Spec, backend: str = "auto", device: str | torch.device | None = None,
          dtype: torch.dtype | None = None, target: Target | None = None) -> nn.Module:
    """A freshly initialised module for `spec`. Parameters are fp32 unless `dtype` says otherwise.

    backend "reference" runs the plain-PyTorch definitions everywhere; "triton" runs the generated
    kernels of the kinds that have them on any device (on a CPU, only under TRITON_INTERPRET=1); "auto"
    uses them on CUDA tensors where the plan put a layer on them. target: what the kernels are planned for
    (default: this process's GPU, else the Triton interpreter).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    resolved = resolve(spec)
    check_build_memory(resolved, dtype)
    kernels = block_kernels(resolved, target or Target.current())
    if backend == "triton":
        _check_triton_paths(kernels)
    module = load_source(render_model_source(resolved), f"composer_model_{spec.name}")
    model = module.make_model(plans_of(kernels))
    for layer in model.modules():
        if hasattr(layer, "backend"):
            layer.backend = backend
    return model.to(device=device, dtype=dtype) if (device or dtype) else model


def check_build_memory(spec: Spec, dtype: torch.dtype | None) -> None:
    """Refuse, before allocating, a model whose parameters alone pass the build memory limit."""
    element = torch.empty((), dtype=dtype).element_size() if dtype is not None else 4
    needed = planned_build_bytes(spec, element)
    if needed > limit("build_bytes"):
        raise SpecError.single(f"model `{spec.name}` plans {planned_params(spec):,} parameters at {element} bytes "
                               f"each and its layers' tables: {needed / 2**30:,.1f} GiB, over the build memory "
                               f"limit of {limit('build_bytes') / 2**30:,.1f} GiB",
                               hint=f"shrink vocab, d_model, max_len or hidden sizes; {raise_hint('build_bytes')}")


def plans_of(kernels: dict[str, LayerKernels]) -> dict:
    """The plan entries the generated `make_model` hands its layers, by block: those on generated kernels."""
    return {name: planned.entry for name, planned in kernels.items() if planned.entry is not None}


def _check_triton_paths(kernels: dict[str, LayerKernels]) -> None:
    for name, planned in kernels.items():
        if planned.path == "reference":
            raise ValueError(f"block `{name}`: backend 'triton' cannot run it: {planned.reason}; use backend 'auto'")
