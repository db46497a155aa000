"""The generated gated RMSNorm kernels against the plain-PyTorch reference, forward and every gradient.

Runs through Triton's interpreter on the CPU (tests/conftest.py), compiled on a GPU with
TRITON_INTERPRET=0. The reference runs in fp64; the kernels in fp32 (and bf16 on a GPU).
"""

import ast
import os

import pytest
import torch

from composer.codegen.render import render_kernel
from composer.kernels.norms.gated_rmsnorm import HEADER, gated_rmsnorm_triton, norm_constants
from composer.kernels.norms.reference import gated_rmsnorm

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" or not torch.cuda.is_available() else "cuda"


def relative_error(got, want):
    assert torch.isfinite(got).all()
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


# leading shape (rows), width, gate: widths that are not powers of two are masked inside a wider tile;
# 2 * 97 rows make several backward programs, each with a partial run of rows at the end.
CASES = [((2, 37), 96, True), ((3, 5), 64, False), ((2, 97), 300, True), ((1, 7), 16, True), ((61,), 2048, True)]


def test_a_gate_sliced_from_a_wider_row_is_read_in_place():
    """Decoding passes z as the slice u[:, :W] of in_proj's output (rows U apart): read there, not copied, with
    the same output and gradients as a dense gate (the gradient lands in the slice's place of u)."""
    torch.manual_seed(11)
    rows, width, wide = 5, 96, 250
    x = torch.randn(rows, width, dtype=torch.float64, device=DEVICE) * 3
    u = torch.randn(rows, wide, dtype=torch.float64, device=DEVICE)
    weight = 1 + 0.5 * torch.randn(width, dtype=torch.float64, device=DEVICE)
    dout = torch.randn(rows, width, dtype=torch.float64, device=DEVICE)
    want = gated_rmsnorm(x, u[:, 3:3 + width], weight, 1e-5)
    want_du, = torch.autograd.grad(gated_rmsnorm(x, u.requires_grad_()[:, 3:3 + width], weight, 1e-5), [u], dout)
    u32 = u.detach().float().requires_grad_()
    gate = u32[:, 3:3 + width]
    assert not gate.is_contiguous()
    got = gated_rmsnorm_triton(x.float(), gate, weight.float(), 1e-5)
    got_du, = torch.autograd.grad(got, [u32], dout.float())
    assert relative_error(got.cpu(), want.cpu()) < 1e-5
    assert relative_error(got_du.cpu(), want_du.cpu()) < 1e-5
    assert got_du[:, :3].abs().max() == 0 and got_du[:, 3 + width:].abs().max() == 0


@pytest.mark.parametrize("lead,width,has_gate", CASES)
def test_matches_reference_and_gradients(lead, width, has_gate):
    torch.manual_seed(width + len(lead))
    x = torch.randn(*lead, width, dtype=torch.float64) * 3
    gate = torch.randn(*lead, width, dtype=torch.float64) if has_gate else None
    weight = 1 + 0.5 * torch.randn(width, dtype=torch.float64)
    dout = torch.randn(*lead, width, dtype=torch.float64)
    leaves = [t for t in (x, gate, weight) if t is not None]

    want = gated_rmsnorm(*(t.requires_grad_() if t is not None else None for t in (x, gate, weight)), 1e-5)
    want_grads = torch.autograd.grad(want, leaves, dout)
    inputs = [t.detach().float().to(DEVICE).requires_grad_() if t is not None else None for t in (x, gate, weight)]
    got = gated_rmsnorm_triton(*inputs, 1e-5)
    got_grads = torch.autograd.grad(got, [t for t in inputs if t is not None], dout.float().to(DEVICE))

    assert got.dtype == torch.float32 and got.shape == want.shape
    assert relative_error(got.cpu(), want) < 1e-5
    for name, g, w in zip(["dx", "dgate", "dweight"] if has_gate else ["dx", "dweight"], got_grads, want_grads):
        assert relative_error(g.cpu(), w) < 1e-5, name


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 storage on the GPU")
def test_bf16_inputs_within_bf16_tolerance():
    torch.manual_seed(0)
    x, gate = (torch.randn(8, 512, 2048, device="cuda") for _ in range(2))
    weight = torch.rand(2048, device="cuda") + 0.5
    dout = torch.randn(8, 512, 2048, device="cuda")
    inputs = [t.bfloat16().requires_grad_() for t in (x, gate)] + [weight.clone().requires_grad_()]
    got = gated_rmsnorm_triton(*inputs, 1e-5)
    got_grads = torch.autograd.grad(got, inputs, dout.bfloat16())
    reference = [t.double().requires_grad_() for t in (x, gate, weight)]
    want = gated_rmsnorm(*reference, 1e-5)
    want_grads = torch.autograd.grad(want, reference, dout.double())
    assert got.dtype == torch.bfloat16
    for g, w in zip([got, *got_grads], [want, *want_grads]):
        assert relative_error(g.float(), w) < 1e-2


def test_no_rows_gives_an_empty_output_and_gradients():
    x = torch.zeros(2, 0, 8, device=DEVICE, requires_grad=True)
    weight = torch.ones(8, device=DEVICE, requires_grad=True)
    out = gated_rmsnorm_triton(x, torch.zeros_like(x), weight, 1e-5)
    out.sum().backward()
    assert out.shape == (2, 0, 8) and x.grad.shape == (2, 0, 8)
    assert torch.equal(weight.grad, torch.zeros(8, device=DEVICE))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="weight"):
        gated_rmsnorm_triton(torch.zeros(2, 8), None, torch.ones(9), 1e-5)


@pytest.mark.parametrize("has_gate", [True, False])
def test_rendered_source_is_formatted_and_branch_free(has_gate):
    source = render_kernel("gated_rmsnorm.py.jinja", norm_constants(300, has_gate), HEADER)
    ast.parse(source)
    for number, line in enumerate(source.splitlines(), 1):
        assert len(line) <= 120 and line == line.rstrip(), f"line {number}: {line!r}"
    assert "#   W = 300" in source and "BLOCK_W = tl.constexpr(512)" in source
    assert ("z_ptr" in source) == has_gate and ("sigmoid" in source) == has_gate
