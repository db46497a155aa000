"""The generated chunked delta-rule kernels against the reference (TRITON_INTERPRET on a CPU; compiled on a
GPU with TRITON_INTERPRET=0), forward and every gradient: odd lengths, lengths that are no multiple of the
chunk, key dim != value dim, fewer key heads than value heads, from an initial state, gate on and off."""

import ast
import os

import pytest
import torch
import torch.nn.functional as F

from composer.codegen.render import render_kernel
from composer.kernels.delta.chunk import delta_rule_chunked_triton
from composer.kernels.delta.plan import BACKWARD_TEMPLATE, FORWARD_TEMPLATE, STEP_TEMPLATE, DeltaSizes, plan_delta
from composer.kernels.delta.reference import delta_rule_chunked

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # fp32: the kernels' sums run in another order than the reference's

CASES = {  # name: (b, L, H, Hk, K, V, chunk, gate, initial state)
    "gated_odd_length": (2, 37, 4, 2, 16, 32, 16, True, True),
    "plain_no_state": (1, 50, 2, 2, 32, 16, 32, False, False),
    "gated_chunk_64_tail": (1, 70, 2, 1, 16, 16, 64, True, False),
    "plain_with_state_short": (2, 5, 3, 3, 16, 16, 16, False, True),
    "gated_two_value_blocks": (1, 45, 2, 1, 32, 128, 32, True, True),
    "gated_two_key_blocks": (1, 21, 2, 1, 128, 32, 16, True, True),    # the state walks hold K = 128 as 2 x 64
    "plain_two_key_blocks": (1, 19, 2, 2, 128, 16, 16, False, True),
}


def inputs(b, L, H, Hk, K, V, gate, initial, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensors = dict(q=torch.randn(b, L, Hk, K, generator=g), k=F.normalize(torch.randn(b, L, Hk, K, generator=g), dim=-1),
                   v=torch.randn(b, L, H, V, generator=g), beta=torch.rand(b, L, H, generator=g),
                   log_gate=-torch.rand(b, L, H, generator=g) * 0.5 if gate else None,
                   initial_state=torch.randn(b, H, K, V, generator=g) if initial else None)
    return {name: None if t is None else t.to(DEVICE).requires_grad_() for name, t in tensors.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_every_gradient_match_the_reference(case):
    b, L, H, Hk, K, V, chunk, gate, initial = CASES[case]
    x = inputs(b, L, H, Hk, K, V, gate, initial)
    leaves = [name for name, t in x.items() if t is not None]
    results = []
    for form in (delta_rule_chunked, delta_rule_chunked_triton):
        y, final = form(x["q"], x["k"], x["v"], x["beta"], x["log_gate"], chunk, initial_state=x["initial_state"])
        weights = torch.linspace(-1, 1, y.numel(), device=DEVICE).view_as(y)
        loss = (y * weights).sum() + (final * final.detach().sign()).sum()
        results.append((y, final, torch.autograd.grad(loss, [x[name] for name in leaves])))
    (y_ref, final_ref, grads_ref), (y, final, grads) = results
    assert not torch.isnan(y).any()
    torch.testing.assert_close(y, y_ref, **TOLERANCE)
    torch.testing.assert_close(final, final_ref, **TOLERANCE)
    for name, got, want in zip(leaves, grads, grads_ref):
        assert want.abs().sum() > 0, name
        torch.testing.assert_close(got, want, **TOLERANCE, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("case", ["gated_odd_length", "gated_two_value_blocks", "plain_two_key_blocks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_forward_without_a_backward_matches_the_reference(case, dtype):
    """No gradient: the walk's written values and states go between the kernels in the inputs' dtype."""
    b, L, H, Hk, K, V, chunk, gate, initial = CASES[case]
    x = {name: None if t is None else t.detach() for name, t in inputs(b, L, H, Hk, K, V, gate, initial, 3).items()}
    y_ref, final_ref = delta_rule_chunked(x["q"], x["k"], x["v"], x["beta"], x["log_gate"], chunk,
                                          initial_state=x["initial_state"])
    low = {n: t if t is None or n == "initial_state" else t.to(dtype) for n, t in x.items()}
    with torch.no_grad():
        y, final = delta_rule_chunked_triton(low["q"], low["k"], low["v"], low["beta"], low["log_gate"], chunk,
                                             initial_state=low["initial_state"])
    assert y.dtype == dtype and not torch.isnan(y).any()
    if dtype == torch.float32:
        torch.testing.assert_close(y, y_ref, **TOLERANCE)
        torch.testing.assert_close(final, final_ref, **TOLERANCE)
    else:
        assert relative_error(y, y_ref) < 2e-2 and relative_error(final, final_ref) < 2e-2


def test_the_rendered_forward_has_no_gate_code_without_a_gate():
    plain = plan_delta(DeltaSizes(64, 64, 64, 4, 2, gate=False))
    gated = plan_delta(DeltaSizes(64, 64, 64, 4, 2, gate=True))
    plain_source = render_kernel(FORWARD_TEMPLATE, plain.forward_constants("fp32", False), {"spec": "t"})
    gated_source = render_kernel(FORWARD_TEMPLATE, gated.forward_constants("fp32", True), {"spec": "t"})
    assert "tl.exp" not in plain_source and "log_gate_ptr" not in plain_source and "state0_ptr" not in plain_source
    assert "log_gate_ptr" in gated_source and "states_ptr" in gated_source
    # T's last block row sums A_3m T_m0 over m = 0..2, A's blocks read back from where T goes (3 * 16 * 64 + 2 * 16)
    assert "    below += dot(tl.load(T_ptr + block + 3104), t2_0)\n    t3_0 = -dot(t3_3, below)" in gated_source


def relative_error(got, want) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


# Triton 3.6's interpreter multiplies bf16 tiles wrongly (numpy has no bf16): on the CPU the 16-bit case runs
# fp16 inputs, which take the same 16-bit operand path; a GPU runs bf16.
LOW = torch.float16 if DEVICE == "cpu" else torch.bfloat16


def test_16bit_inputs_multiply_16bit_operands_within_their_error_of_the_fp32_reference():
    b, L, H, Hk, K, V, chunk = 1, 45, 2, 1, 32, 32, 32
    x = inputs(b, L, H, Hk, K, V, gate=True, initial=True, seed=7)
    low = {n: t.detach().to(LOW).requires_grad_() if n != "initial_state" else t
           for n, t in x.items()}
    results = []
    for form, args in ((delta_rule_chunked, x), (delta_rule_chunked_triton, low)):
        y, final = form(args["q"], args["k"], args["v"], args["beta"], args["log_gate"], chunk,
                        initial_state=args["initial_state"])
        assert y.dtype == args["v"].dtype
        loss = (y.float() * torch.linspace(-1, 1, y.numel(), device=DEVICE).view_as(y)).sum() + final.sum()
        leaves = [args[n] for n in ("q", "k", "v", "beta", "log_gate")]
        results.append([y, final, *torch.autograd.grad(loss, leaves)])
    for want, got in zip(*results):
        assert not torch.isnan(got).any() and relative_error(got, want) < 2e-2, relative_error(got, want)


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("chunk, precision", [(16, "fp32"), (64, "bf16"), (128, "fp32")])
def test_rendered_kernels_are_formatted_python(gate, chunk, precision):
    """Rendered source is read by people: valid Python, lines within 120 columns, no trailing space, two blank
    lines before each kernel, no runs of blank lines."""
    plan = plan_delta(DeltaSizes(128, 64, chunk, 4, 2, gate))
    for initial in (False, True):
        sources = [render_kernel(FORWARD_TEMPLATE, plan.forward_constants(precision, initial), {"spec": "t"})]
        sources.append(render_kernel(BACKWARD_TEMPLATE, plan.backward_constants(precision, initial), {"spec": "t"}))
        sources.append(render_kernel(STEP_TEMPLATE, plan.step_constants(), {"spec": "t"}))
        for source in sources:
            ast.parse(source)
            lines = source.splitlines()
            for number, line in enumerate(lines, 1):
                assert len(line) <= 120 and line == line.rstrip(), f"line {number}: {line!r}"
                if line.startswith("@triton.jit"):
                    assert lines[number - 3:number - 1] == ["", ""] and lines[number - 4] != "", f"line {number}"
            assert "\n\n\n\n" not in source


@pytest.mark.parametrize("gate", [True, False])
def test_the_step_kernel_matches_the_reference_step(gate):
    from composer.kernels.delta.chunk import delta_step_triton
    from composer.kernels.delta.reference import delta_rule_step

    g = torch.Generator().manual_seed(3)
    b, H, Hk, K, V = 2, 4, 2, 16, 64  # two value blocks a head
    state = torch.randn(b, H, K, V, generator=g)
    q, k = torch.randn(b, Hk, K, generator=g), F.normalize(torch.randn(b, Hk, K, generator=g), dim=-1)
    v, beta = torch.randn(b, H, V, generator=g), torch.rand(b, H, generator=g)
    log_gate = -torch.rand(b, H, generator=g) if gate else None
    args = [None if t is None else t.to(DEVICE) for t in (state, q, k, v, beta, log_gate)]
    for got, want in zip(delta_step_triton(*args), delta_rule_step(*args)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_every_module_a_run_loads_is_listed_by_its_plan(monkeypatch):
    """Training (with and without a starting state), a no-grad prefill and decoding steps load only what the
    plan lists for an export (`DeltaPlan.loadable`), and between them every listed fp32 module."""
    from composer.kernels.delta import chunk

    plan = plan_delta(DeltaSizes(16, 16, 16, 2, 1, gate=True))
    loaded = []
    load = chunk.load_kernel_once
    monkeypatch.setattr(chunk, "load_kernel_once", lambda template, constants, header: loaded.append(
        (template, tuple(sorted(constants.items())))) or load(template, constants, header))
    for initial, grad in ((False, True), (True, True), (True, False)):
        x = inputs(1, 21, 2, 1, 16, 16, gate=True, initial=initial)
        with torch.set_grad_enabled(grad):
            y, final = chunk.delta_rule_chunked_triton(x["q"], x["k"], x["v"], x["beta"], x["log_gate"], 16,
                                                       initial_state=x["initial_state"], plan=plan)
            if grad:
                (y.sum() + final.sum()).backward()
    x = inputs(1, 1, 2, 1, 16, 16, gate=True, initial=True)
    chunk.delta_step_triton(x["initial_state"].detach(), *(x[n][:, 0].detach() for n in ("q", "k", "v", "beta",
                                                                                        "log_gate")), plan=plan)
    listed = {(call.template, tuple(sorted(call.constants))) for call in plan.loadable()}
    fp32 = {(t, c) for t, c in listed if dict(c).get("OPERAND", "fp32") == "fp32"}
    # training from no state loads the forward a no-grad call from no state runs: every fp32 module is loaded
    assert set(loaded) <= listed and fp32 == set(loaded) & fp32
