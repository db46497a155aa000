"""A built model gives the same outputs and gradients on the generated kernels as on the reference.

Runs the Triton path through the interpreter on the CPU (tests/conftest.py sets TRITON_INTERPRET).
"""

import os

import pytest
import torch

import composer

from .conftest import small_spec_data


def spec_with(mixer: dict):
    return composer.validate(small_spec_data(blocks={"b": {"mixer": mixer, "channel": "swiglu"}},
                                             layers=["b", "b"]))


@pytest.mark.parametrize("mixer", [
    {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16},
    {"kind": "semiseparable", "state": 16, "head_dim": 32, "chunk": 16, "decay": "none", "groups": 2},
    {"kind": "quasiseparable", "state": 16, "head_dim": 32, "chunk": 16},
    {"kind": "lowrank", "heads": 4, "head_dim": 16, "feature_dim": 16, "chunk": 16},
    {"kind": "lowrank", "heads": 4, "head_dim": 16, "feature_dim": 16, "chunk": 16, "decay": "fixed",
     "normalize": False},
    {"kind": "delta", "heads": 4, "head_dim": 16, "key_heads": 2, "key_dim": 16, "chunk": 16},
    {"kind": "delta", "heads": 2, "head_dim": 32, "key_dim": 16, "chunk": 16, "gate": False, "conv": 0},
])
def test_triton_backend_matches_reference(mixer):
    spec = spec_with(mixer)
    torch.manual_seed(0)
    reference = composer.build(spec, backend="reference")
    generated = composer.build(spec, backend="triton")
    generated.load_state_dict(reference.state_dict())
    if os.environ.get("TRITON_INTERPRET") != "1":  # compiled kernels: the generated model runs on the GPU
        generated.cuda()
    tokens = torch.randint(0, 100, (2, 21))
    outputs = []
    for model in (reference, generated):
        device = next(model.parameters()).device
        logits = model(tokens.to(device))
        logits.square().mean().backward()
        outputs.append((logits.cpu(), [p.grad.cpu() for p in model.parameters()]))
    (ref_logits, ref_grads), (logits, grads) = outputs
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


def test_triton_backend_rejects_a_taylor_map_it_cannot_tile():
    spec = spec_with({"kind": "lowrank", "heads": 4, "head_dim": 16, "feature_map": "taylor", "chunk": 16})
    with pytest.raises(ValueError, match=r"273 from taylor\(16\)"):
        composer.build(spec, backend="triton")


def test_build_sets_the_backend_on_every_state_space_layer():
    spec = spec_with({"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16})
    for backend in ("auto", "reference"):
        model = composer.build(spec, backend=backend)
        layers = [m for m in model.modules() if hasattr(m, "backend")]
        kinds = sorted(type(m).__name__ for m in layers)  # each layer and its fused output norm
        assert kinds == ["GatedRMSNorm", "GatedRMSNorm", "Mamba2", "Mamba2"] and {m.backend for m in layers} == {backend}


def test_triton_backend_rejects_sizes_the_kernels_cannot_tile():
    spec = spec_with({"kind": "semiseparable", "state": 24, "head_dim": 16, "chunk": 16})
    with pytest.raises(ValueError, match="powers of two >= 16"):
        composer.build(spec, backend="triton")


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend"):
        composer.build(spec_with({"kind": "attention", "heads": 4}), backend="cuda")
