"""The fused Mamba-2 decoding step (codegen/templates/ssd_decode_step.py.jinja: short conv, dt's softplus, decay,
state update, skip) against the plain-PyTorch composition of the reference's pieces, under Triton's interpreter on
a CPU (tests/conftest.py) or compiled on a GPU; and its rendered source."""

import ast

import pytest
import torch
import torch.nn.functional as F

from composer.codegen.render import render_kernel
from composer.kernels.semiseparable.decode_plan import DECODE_TEMPLATE, decode_constants
from composer.kernels.semiseparable.reference import ssd_step
from composer.kernels.norms.reference import gated_rmsnorm
from composer.kernels.semiseparable.decode_plan import fused_reason
from composer.kernels.semiseparable.step import ssd_decode_layer_triton, ssd_decode_step_triton


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HEADER = {"spec": "mamba2_tiny", "layer": "ssd"}


def code_only(source: str) -> str:
    """The source without comments and docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) is not None:
            node.body = node.body[1:]
    return ast.unparse(tree)


def assert_formatted(source: str) -> None:
    """Valid Python, lines within 120 columns, no trailing spaces, two blank lines before each kernel."""
    lines = source.splitlines()
    for number, line in enumerate(lines, 1):
        assert len(line) <= 120 and line == line.rstrip(), f"line {number}: {line!r}"
        if line.startswith("@triton.jit"):
            assert lines[number - 3:number - 1] == ["", ""] and lines[number - 4] != "", f"line {number}"
    assert "\n\n\n\n" not in source


def reference_step(u, conv_state, weight, bias, state, dt_bias, A_log, D, sizes):
    """The layer's unfused decoding step in fp32: returns y (b, H P), the new conv state and the new state."""
    heads, head_dim, n, groups = sizes["heads"], sizes["head_dim"], sizes["state"], sizes["groups"]
    d_inner, gate = heads * head_dim, heads * head_dim if sizes["gate"] else 0
    channels = d_inner + 2 * groups * n
    xbc_new = u[:, gate:gate + channels].float()
    window = torch.cat([conv_state.float(), xbc_new[:, :, None]], dim=2)
    xbc = F.silu(F.conv1d(window, weight.float(), bias.float(), groups=channels))[:, :, 0]
    x = xbc[:, :d_inner].reshape(-1, heads, head_dim)
    B, C = xbc[:, d_inner:].reshape(-1, 2, groups, n).unbind(1)
    if sizes["decay"] == "data":
        dt = F.softplus(u[:, gate + channels:].float() + dt_bias.float())
        log_a, scaled = dt * -torch.exp(A_log.float()), x * dt[..., None]
    elif sizes["decay"] == "fixed":
        log_a, scaled = (-torch.exp(A_log.float())).expand(x.shape[0], heads), x
    else:
        log_a, scaled = torch.zeros(x.shape[0], heads, device=x.device), x
    y, new_state = ssd_step(state.float(), scaled, log_a, B, C)
    if D is not None:
        y = y + x * D.float()[:, None]
    return y.reshape(-1, d_inner), window[:, :, 1:], new_state


def inputs(sizes, batch: int, dtype):
    torch.manual_seed(4)
    heads, head_dim, n, groups, conv = (sizes[k] for k in ("heads", "head_dim", "state", "groups", "conv"))
    constants = decode_constants(**sizes)
    channels = constants["CHANNELS"]
    u = torch.randn(batch, constants["U_WIDTH"], device=DEVICE).to(dtype)
    conv_state = torch.randn(batch, channels, conv - 1, device=DEVICE).to(dtype)
    weight, bias = 0.5 * torch.randn(channels, 1, conv, device=DEVICE), 0.1 * torch.randn(channels, device=DEVICE)
    state = torch.randn(batch, heads, head_dim, n, device=DEVICE)
    dt_bias, A_log = torch.randn(heads, device=DEVICE) - 2, torch.rand(heads, device=DEVICE) * 2
    D = torch.randn(heads, device=DEVICE) if sizes["skip"] else None
    return constants, u, conv_state, weight.to(dtype), bias.to(dtype), state, dt_bias, A_log, D


CASES = {
    "data": dict(head_dim=16, state=16, heads=3, groups=1, conv=4, gate=True, decay="data", skip=True),
    "groups_no_gate": dict(head_dim=8, state=32, heads=4, groups=2, conv=3, gate=False, decay="data", skip=True),
    "fixed_no_skip": dict(head_dim=16, state=8, heads=2, groups=1, conv=2, gate=True, decay="fixed", skip=False),
    "none": dict(head_dim=32, state=16, heads=2, groups=2, conv=4, gate=False, decay="none", skip=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_step_matches_the_reference_pieces(case, batch):
    sizes = CASES[case]
    constants, u, conv_state, weight, bias, state, dt_bias, A_log, D = inputs(sizes, batch, torch.float32)
    y_ref, conv_ref, state_ref = reference_step(u, conv_state, weight, bias, state, dt_bias, A_log, D, sizes)
    y = ssd_decode_step_triton(constants, u, conv_state, weight, bias, state, dt_bias, A_log, D)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv_state, conv_ref, rtol=0, atol=0)  # a move of values, in place
    torch.testing.assert_close(state, state_ref, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(y).all()


def test_bf16_activations_with_an_fp32_state():
    sizes = CASES["data"]
    constants, u, conv_state, weight, bias, state, dt_bias, A_log, D = inputs(sizes, 2, torch.bfloat16)
    y_ref, _, state_ref = reference_step(u, conv_state, weight, bias, state, dt_bias, A_log, D, sizes)
    y = ssd_decode_step_triton(constants, u, conv_state, weight, bias, state, dt_bias, A_log, D)
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32
    # the reference keeps the conv's output in fp32; the kernel stores it in bf16 as the layer does
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-2 * y_ref.abs().max().item())
    torch.testing.assert_close(state, state_ref, rtol=2e-2, atol=2e-2 * state_ref.abs().max().item())


def test_constants_that_do_not_fit_the_tensors_are_an_error():
    constants, u, conv_state, weight, bias, state, dt_bias, A_log, D = inputs(CASES["data"], 2, torch.float32)
    with pytest.raises(ValueError, match="do not fit"):
        ssd_decode_step_triton(constants, u[:, 1:], conv_state, weight, bias, state, dt_bias, A_log, D)
    with pytest.raises(ValueError, match="2 taps"):
        decode_constants(**{**CASES["data"], "conv": 0})


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_step_is_formatted_and_branch_free(case):
    constants = decode_constants(**CASES[case])
    source = render_kernel(DECODE_TEMPLATE, constants, HEADER)
    assert_formatted(source)
    source = code_only(source)
    assert ("tl.log(" in source) == ("dt_bias_ptr" in source) == (CASES[case]["decay"] == "data")
    assert ("A_log_ptr" in source) == (CASES[case]["decay"] != "none")
    assert ("D_ptr" in source) == CASES[case]["skip"]


ACTIVATIONS = ("hidden_ptr", "xbc_ptr", "u_ptr", "y_ptr", "residual_ptr", "conv_state_ptr")


@pytest.mark.parametrize("case", sorted(CASES))
def test_under_pdl_each_kernel_reads_activations_and_writes_only_after_its_wait(case):
    """With programmatic dependent launch a kernel runs beside the one before it until gdc_wait: before the wait
    it may load only parameters and its own state, never an activation (the kernel before may still be writing
    it) and never store (the allocator may have handed it a buffer the kernel before still reads)."""
    tree = ast.parse(render_kernel(DECODE_TEMPLATE, decode_constants(**CASES[case]), HEADER))
    kernels = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in ("in_proj_conv_fwd", "ssd_decode_step_fwd", "out_proj_fwd"):
        before_wait = []
        for statement in kernels[name].body:
            text = ast.unparse(statement)
            if "gdc_wait()" in text:
                break
            before_wait.append(text)
        else:
            raise AssertionError(f"{name} never waits")
        early = "\n".join(before_wait)
        assert "gdc_launch_dependents()" in early, name
        assert "tl.store" not in early, name
        assert not [ptr for ptr in ACTIVATIONS if f"tl.load({ptr}" in early], name
        assert "tl.load(w_ptr" in early or "tl.load(state_ptr" in early, name  # what the overlap is for


def test_dependent_launch_is_asked_for_and_needs_a_hopper(monkeypatch):
    from composer.kernels.semiseparable.step import dependent_launch
    monkeypatch.delenv("COMPOSER_DECODE_PDL", raising=False)
    assert not dependent_launch(torch.device("cpu"))
    monkeypatch.setenv("COMPOSER_DECODE_PDL", "1")
    assert not dependent_launch(torch.device("cpu"))  # the interpreter has no grid dependency control
    if torch.cuda.is_available():
        assert dependent_launch(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Mamba-2 130M's sizes take minutes under the interpreter")
@pytest.mark.parametrize("batch", [1, 64])
def test_fused_step_at_mamba2_130m_sizes(batch):
    sizes = dict(head_dim=64, state=128, heads=24, groups=1, conv=4, gate=True, decay="data", skip=True)
    constants, u, conv_state, weight, bias, state, dt_bias, A_log, D = inputs(sizes, batch, torch.bfloat16)
    for _ in range(3):  # each step continues the states the one before left
        y_ref, conv_ref, state_ref = reference_step(u, conv_state, weight, bias, state, dt_bias, A_log, D, sizes)
        y = ssd_decode_step_triton(constants, u, conv_state, weight, bias, state, dt_bias, A_log, D)
        torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-2 * y_ref.abs().max().item())
        torch.testing.assert_close(conv_state, conv_ref.to(conv_state.dtype), rtol=0, atol=0)
        torch.testing.assert_close(state, state_ref, rtol=2e-2, atol=2e-2 * state_ref.abs().max().item())
        u = torch.randn_like(u)


def layer_inputs(sizes, batch: int, d_model: int, dtype):
    """The three-kernel step's inputs: the step's own (`inputs`, less u, which in_proj now makes), the block's
    hidden row and residual, both projections and both norms' weights."""
    constants, u, conv_state, weight, bias, state, dt_bias, A_log, D = inputs(sizes, batch, dtype)
    d_inner = sizes["heads"] * sizes["head_dim"]
    hidden, residual = (torch.randn(batch, d_model, device=DEVICE).to(dtype) for _ in range(2))
    in_proj = (torch.randn(constants["U_WIDTH"], d_model, device=DEVICE) / d_model ** 0.5).to(dtype)
    out_proj = (torch.randn(d_model, d_inner, device=DEVICE) / d_inner ** 0.5).to(dtype)
    pre, out = 1 + 0.1 * torch.randn(d_model, device=DEVICE), 1 + 0.1 * torch.randn(d_inner, device=DEVICE)
    return (constants, hidden, residual, in_proj, out_proj, pre.to(dtype), out.to(dtype), conv_state, weight, bias,
            state, dt_bias, A_log, D)


def reference_layer(hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias, state, dt_bias, A_log, D,
                    sizes):
    """The block's unfused step in fp32: pre-norm (pre None: none), in_proj, the step, the gate and output norm
    (out None: the gate alone), out_proj, the residual (None: none). Returns (out, conv state, state)."""
    x = hidden.float() if pre is None else gated_rmsnorm(hidden.float(), None, pre.float(), 1e-5)
    u = x @ in_proj.float().t()
    y, conv_new, state_new = reference_step(u, conv_state, weight, bias, state, dt_bias, A_log, D, sizes)
    d_inner = sizes["heads"] * sizes["head_dim"]
    z = u[:, :d_inner] if sizes["gate"] else None
    if out is not None:
        y = gated_rmsnorm(y, z, out.float(), 1e-5)
    elif z is not None:
        y = y * F.silu(z)
    result = y @ out_proj.float().t()
    return (result if residual is None else result + residual.float()), conv_new, state_new


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 3, 20])
@pytest.mark.parametrize("norms", ["both", "neither"])
def test_three_kernel_step_matches_the_unfused_block(case, batch, norms):
    """in_proj's 3-column tail (dt) and widths not a multiple of the 4 outputs a program takes, one row, rows
    past the batch in a 4-row tile (3) and in the last of three 8-row tiles (20), with and without the norms and
    the residual."""
    sizes = CASES[case]
    d_model = 48
    (constants, hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias, state, dt_bias, A_log,
     D) = layer_inputs(sizes, batch, d_model, torch.float32)
    if norms == "neither":
        pre = out = residual = None
    want, conv_want, state_want = reference_layer(hidden, residual, in_proj, out_proj, pre, out, conv_state,
                                                  weight, bias, state, dt_bias, A_log, D, sizes)
    got = ssd_decode_layer_triton(constants, hidden, in_proj, conv_state, weight, bias, state, out_proj,
                                  pre_norm=None if pre is None else (pre, 1e-5), dt_bias=dt_bias, A_log=A_log, D=D,
                                  out_norm=None if out is None else (out, 1e-5), residual=residual)
    assert got.shape == (batch, d_model) and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv_state, conv_want, rtol=1e-6, atol=1e-6)  # in_proj's outputs, moved in
    torch.testing.assert_close(state, state_want, rtol=1e-5, atol=1e-5)


def test_three_kernel_step_in_bf16(bf16_products):
    sizes = CASES["data"]
    (constants, hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias, state, dt_bias, A_log,
     D) = layer_inputs(sizes, 5, 64, torch.bfloat16)
    want, _, state_want = reference_layer(hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias,
                                          state, dt_bias, A_log, D, sizes)
    got = ssd_decode_layer_triton(constants, hidden, in_proj, conv_state, weight, bias, state, out_proj,
                                  pre_norm=(pre, 1e-5), dt_bias=dt_bias, A_log=A_log, D=D, out_norm=(out, 1e-5),
                                  residual=residual)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
    torch.testing.assert_close(state, state_want, rtol=2e-2, atol=2e-2 * state_want.abs().max().item())


def test_the_plan_takes_the_three_kernels_up_to_two_rows():
    assert fused_reason(1) is None and fused_reason(2) is None
    assert fused_reason(3) == "batch 3 is above 2, where torch's GEMMs are faster"


@pytest.mark.parametrize("d_model, sizes", [
    (40, CASES["data"]),
    (37, dict(head_dim=8, state=16, heads=3, groups=1, conv=4, gate=True, decay="data", skip=True))])  # d_inner 24
def test_three_kernel_step_takes_widths_no_multiple_of_16(d_model, sizes):
    """The GEMM programs hold a row's whole width as a masked power-of-two tile (64 for d_model 40 and 37, 32
    for d_inner 24)."""
    (constants, hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias, state, dt_bias, A_log,
     D) = layer_inputs(sizes, 2, d_model, torch.float32)
    want, conv_want, state_want = reference_layer(hidden, residual, in_proj, out_proj, pre, out, conv_state,
                                                  weight, bias, state, dt_bias, A_log, D, sizes)
    got = ssd_decode_layer_triton(constants, hidden, in_proj, conv_state, weight, bias, state, out_proj,
                                  pre_norm=(pre, 1e-5), dt_bias=dt_bias, A_log=A_log, D=D, out_norm=(out, 1e-5),
                                  residual=residual)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, state_want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Mamba-2 130M's sizes take minutes under the interpreter")
@pytest.mark.parametrize("batch", [1, 64])
def test_three_kernel_step_at_mamba2_130m_sizes(batch):
    sizes = dict(head_dim=64, state=128, heads=24, groups=1, conv=4, gate=True, decay="data", skip=True)
    (constants, hidden, residual, in_proj, out_proj, pre, out, conv_state, weight, bias, state, dt_bias, A_log,
     D) = layer_inputs(sizes, batch, 768, torch.bfloat16)
    for _ in range(3):  # each step continues the states the one before left
        want, conv_want, state_want = reference_layer(hidden, residual, in_proj, out_proj, pre, out, conv_state,
                                                      weight, bias, state, dt_bias, A_log, D, sizes)
        got = ssd_decode_layer_triton(constants, hidden, in_proj, conv_state, weight, bias, state, out_proj,
                                      pre_norm=(pre, 1e-5), dt_bias=dt_bias, A_log=A_log, D=D, out_norm=(out, 1e-5),
                                      residual=residual)
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2 * want.abs().max().item())
        torch.testing.assert_close(conv_state.float(), conv_want, rtol=2e-2, atol=2e-2 * conv_want.abs().max().item())
        torch.testing.assert_close(state, state_want, rtol=2e-2, atol=2e-2 * state_want.abs().max().item())
        hidden, residual = torch.randn_like(hidden), got


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9,
                    reason="programmatic dependent launch needs a Hopper GPU")
def test_dependent_launch_in_a_graph_of_layers_equals_the_plain_launch(monkeypatch):
    """Four layers' steps chained in one CUDA graph, as decoding replays them: with PDL every kernel overlaps the
    one before and the allocator reuses buffers between layers; the outputs and both states must be the same
    bits as launched one after another."""
    sizes = dict(head_dim=64, state=128, heads=24, groups=1, conv=4, gate=True, decay="data", skip=True)
    layers = [layer_inputs(sizes, 1, 768, torch.bfloat16) for _ in range(4)]
    hidden = layers[0][1]

    def run(states):
        h = hidden
        for (constants, _, _, in_proj, out_proj, pre, out, _, weight, bias, _, dt_bias, A_log, D), (conv_state, state) \
                in zip(layers, states):
            h = ssd_decode_layer_triton(constants, h, in_proj, conv_state, weight, bias, state, out_proj,
                                        pre_norm=(pre, 1e-5), dt_bias=dt_bias, A_log=A_log, D=D, out_norm=(out, 1e-5),
                                        residual=h)
        return h

    def fresh():
        return [(layer[7].clone(), layer[10].clone()) for layer in layers]

    plain_states = fresh()
    plain = [run(plain_states).clone() for _ in range(2)]  # two tokens: the second reads the first's states
    monkeypatch.setenv("COMPOSER_DECODE_PDL", "1")
    graph_states = fresh()
    run(fresh())  # compiles the PDL launches outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run(graph_states)
    got = []
    for _ in range(2):
        graph.replay()
        got.append(captured.clone())
    torch.cuda.synchronize()
    for want, have in zip(plain, got):
        torch.testing.assert_close(have, want, rtol=0, atol=0)
    for (conv_want, state_want), (conv_have, state_have) in zip(plain_states, graph_states):
        torch.testing.assert_close(conv_have, conv_want, rtol=0, atol=0)
        torch.testing.assert_close(state_have, state_want, rtol=0, atol=0)
