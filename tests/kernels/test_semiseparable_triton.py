"""The generated SSD Triton kernels (chunked forward and backward, decoding step) against the reference.

Runs on CPU through Triton's interpreter (TRITON_INTERPRET=1, set by tests/conftest.py before any
kernel is loaded); with TRITON_INTERPRET=0 and a GPU the same tests run compiled on the GPU. The reference
runs in fp64, so the fp32 tolerance measures the kernels' own rounding. Shapes are a chosen
subset of the grid (batch/heads, groups, P, N, chunk, ragged lengths, decay kind, initial state):
the interpreter runs every program in Python.
"""

import ast
import dataclasses
import os

import pytest
import torch
import triton

from composer.codegen.render import load_kernel, render_kernel
from composer.kernels.semiseparable import chunk
from composer.kernels.semiseparable.chunk import ssd_chunked_triton
from composer.kernels.semiseparable import tuning, tuning_table
from composer.kernels.semiseparable.plan import FUSED_UNREAD, ScanSizes, plan_scan, tunings_by_batch
from composer.kernels.semiseparable.tuning import SSDTuning
from composer.kernels.semiseparable.reference import ssd_chunked, ssd_step
from composer.kernels.semiseparable.step import ssd_step_triton

INTERPRETED = os.environ["TRITON_INTERPRET"] == "1"
DEVICE = "cpu" if INTERPRETED or not torch.cuda.is_available() else "cuda"
F32 = dict(rtol=1e-4, atol=1e-4)


def make_inputs(b, L, H, P, G, N, log_a_range=(0.0, 1.0)):
    """fp64 inputs from the global generator; log_a uniform in -[lo, hi]."""
    lo, hi = log_a_range
    x = torch.randn(b, L, H, P, dtype=torch.float64)
    log_a = -(lo + (hi - lo) * torch.rand(b, L, H, dtype=torch.float64))
    B = torch.randn(b, L, G, N, dtype=torch.float64)
    C = torch.randn(b, L, G, N, dtype=torch.float64)
    h0 = torch.randn(b, H, P, N, dtype=torch.float64)
    return x, log_a, B, C, h0


def run_both(inputs, chunk_len, decay, use_h0, tuning=SSDTuning(), return_final_state=True):
    """Outputs and input gradients of the reference (fp64) and the kernels (fp32), under one
    random cotangent of y and of the final state. Gradients absent from a call are None."""
    x, log_a, B, C, h0 = inputs
    y_grad = torch.randn_like(x)
    state_grad = torch.randn_like(h0) if return_final_state else torch.zeros_like(h0)
    results = []
    for dtype, device in ((torch.float64, "cpu"), (torch.float32, DEVICE)):
        leaves = [t.to(dtype=dtype, device=device, copy=True).requires_grad_() for t in inputs]
        x_, log_a_, B_, C_, h0_ = leaves
        h0_ = h0_ if use_h0 else None
        if dtype == torch.float64:
            log_a_used = log_a_ if decay == "data" else torch.zeros_like(log_a_)
            y, final_state = ssd_chunked(x_, log_a_used, B_, C_, chunk_len, h0_)
        else:
            log_a_used = log_a_ if decay == "data" else None
            y, final_state = ssd_chunked_triton(x_, log_a_used, B_, C_, chunk_len, h0_, return_final_state,
                                                tuning=tuning)
        loss = (y * y_grad.to(y)).sum()
        if return_final_state:
            loss = loss + (final_state * state_grad.to(final_state)).sum()
        loss.backward()
        grads = [leaf.grad for leaf in leaves]
        results.append((y, final_state, grads))
    return results


def assert_matches(got, want, what):
    """fp32 against fp64 to 1e-4, relative to each entry and to the tensor's RMS: an entry that is
    a small sum of large terms (dlog_a over 300 steps of decay ~1) keeps only fp32's share of them."""
    assert got is not None and want is not None, what
    assert torch.isfinite(got).all(), f"{what} is not finite"
    scale = max(1.0, want.double().pow(2).mean().sqrt().item())
    torch.testing.assert_close(got.cpu().double(), want.double(), rtol=F32["rtol"], atol=F32["atol"] * scale,
                               msg=lambda m: f"{what}: {m}")


GRAD_NAMES = ("x", "log_a", "B", "C", "initial_state")

# b, H, G, L, P, N, chunk_len, decay, initial state, (block_p, block_q): tiles below P and Q make the
# kernels loop over head-dim tiles and over blocks of a chunk's steps; block_n = block_q splits the state
# size across state-passing programs where N is larger.
# Every (length, decay, initial state) pair once, with batch/heads, groups, P, N, chunk and tiles varied.
CASES = [
    (2, 4, 2, 37, 32, 16, 16, "data", True, (16, 16)),
    (2, 4, 1, 37, 16, 32, 32, "data", False, (16, 16)),
    (1, 3, 1, 1, 16, 16, 16, "data", True, (32, 32)),
    (2, 4, 2, 1, 32, 32, 32, "data", False, (32, 16)),
    (1, 3, 1, 70, 32, 32, 16, "data", True, (16, 16)),
    (2, 4, 1, 70, 16, 32, 32, "data", False, (32, 32)),
    (1, 4, 2, 64, 16, 16, 16, "data", True, (16, 16)),
    (1, 3, 3, 37, 16, 16, 32, "data", False, (16, 16)),
    (1, 3, 1, 37, 32, 16, 32, "none", True, (16, 16)),
    (2, 4, 2, 37, 16, 32, 16, "none", False, (32, 32)),
    (2, 4, 1, 1, 32, 16, 16, "none", True, (32, 16)),
    (1, 3, 1, 1, 16, 32, 32, "none", False, (16, 32)),
    (1, 3, 3, 70, 32, 32, 32, "none", True, (16, 16)),
    (2, 4, 2, 70, 16, 32, 16, "none", False, (32, 32)),
]


@pytest.mark.parametrize("fused", [False, True], ids=["split", "fused"])
@pytest.mark.parametrize("b,H,G,L,P,N,chunk_len,decay,use_h0,tiles", CASES)
def test_chunked_outputs_and_grads_match_reference(b, H, G, L, P, N, chunk_len, decay, use_h0, tiles, fused):
    """Both forward forms; the fused one walks the sequence in block_q steps, which can be shorter than
    the chunk, and stores the states the backward reads at the chunk's own boundaries."""
    torch.manual_seed(1000 * L + 10 * P + N)
    inputs = make_inputs(b, L, H, P, G, N)
    tuning = SSDTuning(block_p=tiles[0], block_q=tiles[1], block_n=tiles[1], fused=fused)
    (y_ref, s_ref, g_ref), (y, s, g) = run_both(inputs, chunk_len, decay, use_h0, tuning)
    assert_matches(y, y_ref, "y")
    assert_matches(s, s_ref, "final_state")
    for name, got, want in zip(GRAD_NAMES, g, g_ref):
        if (name == "log_a" and decay == "none") or (name == "initial_state" and not use_h0):
            assert got is None, f"d{name} should be None"
        else:
            assert_matches(got, want, f"d{name}")


# b, H, G, L, P, N, chunk_len, decay, (block_p, block_q): dt scales the input inside the kernels, so its
# gradient is summed over P tiles (block_p < P) and its scaling reaches every product x takes part in.
DT_CASES = [
    (2, 4, 2, 37, 32, 32, 16, "data", (16, 16)),
    (1, 3, 1, 70, 16, 16, 32, "data", (16, 32)),
    (2, 4, 1, 45, 32, 16, 16, "none", (16, 16)),
    (2, 3, 1, 77, 16, 32, 32, "data", (16, 16, 32)),  # (block_p, block_q, dx_block_q): ddt and dD from 32-step dx
]


@pytest.mark.parametrize("fused", [False, True], ids=["split", "fused"])
@pytest.mark.parametrize("use_D", [False, True], ids=["no_skip", "skip_D"])
@pytest.mark.parametrize("b,H,G,L,P,N,chunk_len,decay,tiles", DT_CASES)
def test_dt_scaled_input_matches_reference_on_x_times_dt(b, H, G, L, P, N, chunk_len, decay, tiles, use_D, fused):
    """With D, Mamba-2's skip y += D x (x before dt) is fused too: dx and dD come from the dx kernel."""
    torch.manual_seed(77 + L)
    x, log_a, B, C, h0 = make_inputs(b, L, H, P, G, N)
    dt = torch.rand(b, L, H, dtype=torch.float64) + 0.05
    D = torch.randn(H, dtype=torch.float64)
    y_grad, state_grad = torch.randn_like(x), torch.randn_like(h0)
    results = []
    for dtype, device in ((torch.float64, "cpu"), (torch.float32, DEVICE)):
        leaves = [t.to(dtype=dtype, device=device, copy=True).requires_grad_() for t in (x, dt, log_a, B, C, h0, D)]
        x_, dt_, log_a_, B_, C_, h0_, D_ = leaves
        if dtype == torch.float64:
            log_a_used = log_a_ if decay == "data" else torch.zeros_like(log_a_)
            y, state = ssd_chunked(x_ * dt_[..., None], log_a_used, B_, C_, chunk_len, h0_)
            y = y + D_[:, None] * x_ if use_D else y
        else:
            y, state = ssd_chunked_triton(x_, log_a_ if decay == "data" else None, B_, C_, chunk_len, h0_, dt=dt_,
                                          D=D_ if use_D else None,
                                          tuning=SSDTuning(block_p=tiles[0], block_q=tiles[1], block_n=tiles[1],
                                                           fused=fused, dx_block_q=tiles[2] if len(tiles) > 2 else None))
        ((y * y_grad.to(y)).sum() + (state * state_grad.to(state)).sum()).backward()
        results.append([y, state] + [leaf.grad for leaf in leaves])
    names = ["y", "final_state", "dx", "ddt", "dlog_a", "dB", "dC", "dinitial_state", "dD"]
    for name, want, got in zip(names, *results):
        if (name == "dlog_a" and decay == "none") or (name == "dD" and not use_D):
            assert got is None
        else:
            assert_matches(got, want, name)


@pytest.mark.parametrize("decay", ["data", "none"])
@pytest.mark.parametrize("forward,backward", [
    (SSDTuning(block_q=16, block_s=32), None),  # score blocks larger than the steps' blocks
    (SSDTuning(block_q=16), SSDTuning(block_q=32)),  # the backward reads the forward's scores in larger blocks
    (SSDTuning(block_q=32), SSDTuning(block_q=16, block_s=64)),
    (SSDTuning(block_q=16, heads_per_program=2), None),  # the two heads of a group in one output program
    (SSDTuning(block_q=16, split_diagonal=False), None),  # one loop over every block, per-element decays
    (SSDTuning(block_q=32, state_block_q=16, state_num_stages=2), None),  # state passing in smaller steps
    # 8 warps under a register cap, the state passing on its own 4 (launch options: the results stand)
    (SSDTuning(block_q=16, num_warps=8, state_num_warps=4, max_registers=128), None),
    (SSDTuning(block_q=16, fused=True), SSDTuning(block_q=32)),  # fused walk in 16 steps, backward reads 32
    # C h^T and B G^T in two state pieces
    (SSDTuning(block_q=16, output_block_n=16, heads_per_program=2), SSDTuning(block_q=32, output_block_n=16)),
    # dx forms the leaving state's dcum shares, dB's loop over heads is products alone (the N = 256 default)
    (SSDTuning(block_q=16, heads_per_program=2), SSDTuning(block_q=16, leaving_share_in_dx=True)),
    # dx programs in larger blocks than dC and dB (the P = 128, N = 256 default): the scores are written that large
    (SSDTuning(block_q=16, heads_per_program=2), SSDTuning(block_q=16, dx_block_q=32, leaving_share_in_dx=True)),
    (SSDTuning(block_q=32), SSDTuning(block_q=32, dx_block_q=16)),  # and in smaller ones
], ids=["block_s", "backward_larger", "backward_block_s", "heads_per_program", "one_loop", "state_block_q",
        "register_cap", "fused", "output_block_n", "leaving_share_in_dx", "dx_block_q", "dx_block_q_smaller"])
def test_score_blocks_and_direction_tiles_do_not_change_results(decay, forward, backward):
    torch.manual_seed(64)
    backward = None if backward is None else SSDTuning(block_p=16, block_q=backward.block_q, block_n=16,
                                                       block_s=backward.block_s,
                                                       output_block_n=backward.output_block_n,
                                                       leaving_share_in_dx=backward.leaving_share_in_dx,
                                                       dx_block_q=backward.dx_block_q)
    tuning = SSDTuning(block_p=16, block_q=forward.block_q, block_n=16, block_s=forward.block_s,
                       heads_per_program=forward.heads_per_program, split_diagonal=forward.split_diagonal,
                       state_block_q=forward.state_block_q, state_num_stages=forward.state_num_stages,
                       num_warps=forward.num_warps, state_num_warps=forward.state_num_warps,
                       max_registers=forward.max_registers,
                       fused=forward.fused, output_block_n=forward.output_block_n, backward=backward)
    (y_ref, s_ref, g_ref), (y, s, g) = run_both(make_inputs(2, 45, 4, 32, 2, 32), 64, decay, True, tuning)
    for name, got, want in zip(("y", "final_state") + GRAD_NAMES, [y, s] + g, [y_ref, s_ref] + g_ref):
        if name == "log_a" and decay == "none":
            assert got is None
        else:
            assert_matches(got, want, name)


@pytest.mark.parametrize("use_h0", [True, False])
def test_chunked_without_final_state_matches_reference(use_h0):
    torch.manual_seed(7)
    inputs = make_inputs(b=1, L=37, H=2, P=16, G=1, N=16)
    (y_ref, _, g_ref), (y, s, g) = run_both(inputs, 16, "data", use_h0, return_final_state=False)
    assert s is None
    assert_matches(y, y_ref, "y")
    for name, got, want in zip(GRAD_NAMES, g, g_ref):
        if name == "initial_state" and not use_h0:
            assert got is None
        else:
            assert_matches(got, want, f"d{name}")


@pytest.mark.parametrize("fused", [False, True], ids=["split", "fused"])
@pytest.mark.parametrize("decay", ["data", "none"])
def test_inference_forward_matches_training_forward_and_reference(decay, fused):
    """Without a gradient to compute the forward saves nothing (the fused form then runs one kernel) and
    builds no autograd node; its outputs are the training forward's."""
    torch.manual_seed(5)
    x, log_a, B, C, h0 = (t.float().to(DEVICE) for t in make_inputs(b=2, L=45, H=4, P=32, G=2, N=16))
    log_a = log_a if decay == "data" else None
    tuning = SSDTuning(block_p=16, block_q=16, fused=fused)
    with torch.no_grad():
        y, s = ssd_chunked_triton(x, log_a, B, C, 32, h0, tuning=tuning)
    assert y.grad_fn is None
    leaves = [t.clone().requires_grad_() for t in (x, B)]
    y_train, s_train = ssd_chunked_triton(leaves[0], log_a, leaves[1], C, 32, h0, tuning=tuning)
    assert y_train.grad_fn is not None
    torch.testing.assert_close(y, y_train.detach(), rtol=0, atol=0)
    torch.testing.assert_close(s, s_train.detach(), rtol=0, atol=0)
    log_a_ref = torch.zeros(2, 45, 4, device=DEVICE) if log_a is None else log_a
    y_ref, s_ref = ssd_chunked(*(t.double().cpu() for t in (x, log_a_ref, B, C)), 32, h0.double().cpu())
    assert_matches(y, y_ref, "y")
    assert_matches(s, s_ref, "final_state")


@pytest.mark.parametrize("fused", [False, True], ids=["split", "fused"])
@pytest.mark.parametrize("log_a_range", [(30.0, 31.0), (0.0, 1e-4)], ids=["decay_near_0", "decay_near_1"])
def test_extreme_decays_over_long_sequence_stay_finite_and_match(log_a_range, fused):
    torch.manual_seed(300)
    inputs = make_inputs(b=1, L=300, H=2, P=16, G=1, N=16, log_a_range=log_a_range)
    (y_ref, s_ref, g_ref), (y, s, g) = run_both(inputs, 32, "data", True, SSDTuning(fused=fused))
    assert_matches(y, y_ref, "y")
    assert_matches(s, s_ref, "final_state")
    for name, got, want in zip(GRAD_NAMES, g, g_ref):
        assert_matches(got, want, f"d{name}")


# Triton 3.6's interpreter multiplies bf16 tiles wrongly (numpy has no bf16), so on the CPU the bf16
# case runs fp32 operands; fp16 operands take the same 16-bit path there, and a GPU runs both natively.
BF16_OPERAND = "fp32" if os.environ.get("TRITON_INTERPRET") == "1" else None


@pytest.mark.parametrize("dtype, tuning", [(torch.bfloat16, SSDTuning(operand=BF16_OPERAND)),
                                           (torch.float16, SSDTuning()),
                                           (torch.bfloat16, SSDTuning(operand=BF16_OPERAND, fused=True)),
                                           (torch.float16, SSDTuning(fused=True))])
def test_16bit_inputs_match_reference_to_their_precision(dtype, tuning):
    torch.manual_seed(16)
    x, log_a, B, C, h0 = (t.to(dtype) for t in make_inputs(b=1, L=37, H=2, P=16, G=1, N=16))
    y, s = ssd_chunked_triton(*(t.to(DEVICE) for t in (x, log_a, B, C)), 16, h0.to(DEVICE), tuning=tuning)
    y_ref, s_ref = ssd_chunked(*(t.double() for t in (x, log_a, B, C)), 16, h0.double())
    assert y.dtype == s.dtype == dtype
    eps = torch.finfo(dtype).eps  # one rounding of each output, plus tf32 dots on a GPU
    for got, want in ((y, y_ref), (s, s_ref)):
        scale = want.pow(2).mean().sqrt().item()
        torch.testing.assert_close(got.cpu().double(), want, rtol=4 * eps, atol=4 * eps * scale)


@pytest.mark.parametrize("G,decay", [(1, "data"), (2, "data"), (2, "none")])
def test_step_matches_reference(G, decay):
    torch.manual_seed(G)
    b, H, P, N = 2, 4, 32, 16
    state = torch.randn(b, H, P, N)
    x_t, B_t, C_t = torch.randn(b, H, P), torch.randn(b, G, N), torch.randn(b, G, N)
    log_a_t = -torch.rand(b, H) if decay == "data" else None
    y, new_state = ssd_step_triton(*(None if t is None else t.to(DEVICE) for t in (state, x_t, log_a_t, B_t, C_t)),
                                   tuning=SSDTuning(block_p=16))
    log_a_ref = log_a_t if decay == "data" else torch.zeros(b, H)
    y_ref, new_state_ref = ssd_step(state, x_t, log_a_ref, B_t, C_t)
    torch.testing.assert_close(y.cpu(), y_ref, **F32)
    torch.testing.assert_close(new_state.cpu(), new_state_ref, **F32)


def test_steps_continue_a_chunked_prefill():
    torch.manual_seed(11)
    x, log_a, B, C, _ = (t.float().to(DEVICE) for t in make_inputs(b=1, L=20, H=2, P=16, G=1, N=16))
    y_all, state_all = ssd_chunked_triton(x, log_a, B, C, 16)
    _, state = ssd_chunked_triton(x[:, :17], log_a[:, :17], B[:, :17], C[:, :17], 16)
    for t in range(17, 20):
        y_t, state = ssd_step_triton(state, x[:, t], log_a[:, t], B[:, t], C[:, t])
        torch.testing.assert_close(y_t, y_all[:, t], **F32)
    torch.testing.assert_close(state, state_all, **F32)


CONSTANTS = dict(P=64, N=64, Q=64, HEADS_PER_GROUP=2, HEADS_PER_PROGRAM=1, DECAY="none", HAS_INITIAL_STATE=True,
                 HAS_DT=False, HAS_D=False, RETURN_FINAL_STATE=True, OPERAND="fp32", DOT_PRECISION="ieee",
                 BLOCK_P=32, BLOCK_Q=32, BLOCK_N=32, SCORE_BLOCK=32, NUM_WARPS=4, NUM_STAGES=3, SPLIT_DIAGONAL=True,
                 STATE_BLOCK_Q=32, STATE_NUM_STAGES=3, STATE_NUM_WARPS=4, OUTPUT_BLOCK_N=64, LEAVING_SHARE_IN_DX=False)
SPLIT_FORM = dict(FUSED=False, SAVES_FOR_BACKWARD=True)  # the forward's own constants
HEADER = dict(spec="mamba2_tiny", layer="ssd")


def code_only(source: str) -> str:
    """The source's code without comments and docstrings, which may name the general formula."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) is not None:
            node.body = node.body[1:]
    return ast.unparse(tree)


@pytest.mark.parametrize("template,fused", [("ssd_forward.py.jinja", False), ("ssd_forward.py.jinja", True),
                                            ("ssd_backward.py.jinja", None), ("ssd_step.py.jinja", None)])
def test_decay_none_renders_no_decay_code_under_a_header(template, fused):
    """The forward's constants carry its form; the backward and the step have one form."""
    forms = {} if fused is None else {**SPLIT_FORM, "FUSED": fused}
    constants = {**CONSTANTS, **forms}
    if fused:
        constants = {name: value for name, value in constants.items() if name not in FUSED_UNREAD}
    source = render_kernel(template, constants, HEADER)
    assert source.startswith(f"# Generated by mixc from template {template}.")
    header = source.split("\n\n", 1)[0]
    assert "# spec: mamba2_tiny" in header and "# layer: ssd" in header
    assert f"# triton: {triton.__version__}" in header
    for name, value in constants.items():
        assert f"#   {name} = {value!r}" in header
    code = code_only(source)
    assert "log_a" not in code and "tl.exp" not in code and "cum" not in code
    assert_every_helper_called(source)
    assert_every_helper_called(render_kernel(template, {**constants, "DECAY": "data"}, HEADER))
    with_decay = code_only(render_kernel(template, {**constants, "DECAY": "data"}, HEADER))
    assert ("log_a_ptr" in with_decay or "cum_ptr" in with_decay) and "tl.exp" in with_decay


@pytest.mark.parametrize("template,share_in_dx", [("ssd_forward.py.jinja", False), ("ssd_backward.py.jinja", False),
                                                  ("ssd_backward.py.jinja", True)],
                         ids=["forward", "backward", "backward_share_in_dx"])
@pytest.mark.parametrize("decay", ["none", "data"])
@pytest.mark.parametrize("flag", [None, "HAS_DT", "HAS_D", "HAS_INITIAL_STATE", "RETURN_FINAL_STATE"])
@pytest.mark.parametrize("heads_per_program", [1, 2])
@pytest.mark.parametrize("split_diagonal", [True, False])
@pytest.mark.parametrize("output_block_n", [64, 32], ids=["whole_state", "state_pieces"])
def test_rendered_kernels_are_formatted_python(template, share_in_dx, decay, flag, heads_per_program, split_diagonal,
                                               output_block_n):
    """Rendered source is read by people: valid Python, lines within 120 columns, no trailing
    spaces and no more than two blank lines in a row, whichever branches the constants take."""
    constants = {**CONSTANTS, "DECAY": decay, "HAS_DT": False, "HAS_D": False, "HAS_INITIAL_STATE": False,
                 "RETURN_FINAL_STATE": False, "HEADS_PER_PROGRAM": heads_per_program, "SPLIT_DIAGONAL": split_diagonal,
                 "OUTPUT_BLOCK_N": output_block_n, "LEAVING_SHARE_IN_DX": share_in_dx,
                 **(SPLIT_FORM if template == "ssd_forward.py.jinja" else {})}
    if flag:
        constants[flag] = True
    assert_formatted(render_kernel(template, constants, HEADER))


@pytest.mark.parametrize("decay", ["none", "data"])
@pytest.mark.parametrize("flag", [None, "HAS_DT", "HAS_D", "HAS_INITIAL_STATE", "RETURN_FINAL_STATE"])
@pytest.mark.parametrize("saves_for_backward", [True, False], ids=["training", "inference"])
def test_rendered_fused_forward_is_formatted_python(decay, flag, saves_for_backward):
    constants = {**{k: v for k, v in CONSTANTS.items() if k not in FUSED_UNREAD}, "DECAY": decay, "HAS_DT": False,
                 "HAS_D": False, "HAS_INITIAL_STATE": False, "RETURN_FINAL_STATE": False, "FUSED": True,
                 "SAVES_FOR_BACKWARD": saves_for_backward}
    if flag:
        constants[flag] = True
    source = render_kernel("ssd_forward.py.jinja", constants, HEADER)
    assert_formatted(source)
    code = code_only(source)
    assert "def chunk_scan_fused_fwd" in code and "def state_passing_fwd" not in code
    assert ("states_ptr" in code) == saves_for_backward and "def chunk_scores_fwd" not in code  # backward's


def assert_every_helper_called(source: str) -> None:
    """Each @triton.jit function is a kernel (launched: its name holds _fwd or _bwd) or called by another
    function of the module: a module carries no helper its kernels do not use."""
    tree = ast.parse(code_only(source))
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    unused = [name for name in functions if "_fwd" not in name and "_bwd" not in name and name not in called]
    assert not unused, f"helpers no kernel calls: {unused}"
    for function in tree.body:  # and no function assigns a name it never reads
        if isinstance(function, ast.FunctionDef):
            names = [node for node in ast.walk(function) if isinstance(node, ast.Name)]
            read = {node.id for node in names if isinstance(node.ctx, ast.Load)}
            unread = sorted({node.id for node in names if isinstance(node.ctx, ast.Store)} - read - {"_"})
            assert not unread, f"{function.name} assigns {unread} and never reads them"


def assert_formatted(source: str) -> None:
    assert_every_helper_called(source)
    ast.parse(source)
    lines = source.splitlines()
    for number, line in enumerate(lines, 1):
        assert len(line) <= 120 and line == line.rstrip(), f"line {number}: {line!r}"
        if line.startswith("@triton.jit"):  # PEP 8: two blank lines before each top-level function
            assert lines[number - 3:number - 1] == ["", ""] and lines[number - 4] != "", f"line {number}"
    assert "\n\n\n\n" not in source


def test_same_constants_load_one_module(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOSER_CACHE", str(tmp_path))
    first = load_kernel("ssd_forward.py.jinja", {**CONSTANTS, **SPLIT_FORM}, HEADER)
    second = load_kernel("ssd_forward.py.jinja", {**CONSTANTS, **SPLIT_FORM}, dict(HEADER))
    assert first is second
    assert len(list((tmp_path / "modules").glob("ssd_forward_*.py"))) == 1
    other = load_kernel("ssd_forward.py.jinja", {**CONSTANTS, **SPLIT_FORM, "Q": 32}, HEADER)
    assert other is not first


@pytest.mark.parametrize("constants,header", [
    ({**CONSTANTS, **SPLIT_FORM, "DECAY": "__import__('os')"}, HEADER),
    ({**CONSTANTS, **SPLIT_FORM, "NUM_WARPS": 4.0}, HEADER),
    ({**CONSTANTS, **SPLIT_FORM, "lower": 1}, HEADER),
    ({**CONSTANTS, **SPLIT_FORM}, {"spec": "x\nimport os"}),
])
def test_render_rejects_unchecked_values(constants, header):
    with pytest.raises(ValueError):
        render_kernel("ssd_forward.py.jinja", constants, header)


def test_fp16_gradients_match_reference_to_their_precision():
    """The backward's 16-bit operand path (a GPU's bf16 path differs only in the operand type)."""
    torch.manual_seed(17)
    x, log_a, B, C, h0 = make_inputs(b=2, L=45, H=4, P=32, G=2, N=16)
    leaves = [t.half().to(DEVICE).requires_grad_() for t in (x, log_a, B, C, h0)]
    y, s = ssd_chunked_triton(*leaves[:4], 16, leaves[4])
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    torch.autograd.backward((y, s), (dy, ds))
    ref_leaves = [t.detach().cpu().double().requires_grad_() for t in leaves]
    y_ref, s_ref = ssd_chunked(*ref_leaves[:4], 16, ref_leaves[4])
    torch.autograd.backward((y_ref, s_ref), (dy.cpu().double(), ds.cpu().double()))
    for name, got, want in [("y", y, y_ref), ("final_state", s, s_ref)] + [
            (f"d{n}", leaf.grad, ref.grad) for n, leaf, ref in zip(GRAD_NAMES, leaves, ref_leaves)]:
        error = (got.detach().cpu().double() - want.detach()).norm() / want.detach().norm()
        assert error < 5e-3, f"{name}: relative error {error:.2e}"


def _sizes(H: int, P: int, N: int) -> ScanSizes:
    return ScanSizes(head_dim=P, state=N, chunk=64, heads=H, groups=1, decays=False, final_state=True)


def test_auto_form_is_fused_from_one_program_per_four_multiprocessors():
    """A tuning that leaves the form open (fused=None) runs fused from the batch whose b * H * P // block_p
    programs reach a quarter of the multiprocessors; an explicit form is never overridden. Without
    multiprocessors (the interpreter) the split form runs."""
    sizes = _sizes(H=8, P=128, N=64)
    half_head = plan_scan(sizes, 132, SSDTuning(block_p=64, block_q=64, segments=1))  # 2 programs a head, whole
    assert [half_head.select("bf16", True, b).forward["FUSED"] for b in (1, 2, 3, 100)] == [False, False, True, True]
    assert half_head.select("bf16", True, 3).rule == "b*H*2 fused programs >= 132 multiprocessors / 4"
    quarter_head = plan_scan(sizes, 132, SSDTuning(block_p=32, block_q=64, segments=1))  # 4 a head: 64 at b = 2
    assert [quarter_head.select("bf16", True, b).forward["FUSED"] for b in (1, 2)] == [False, True]
    # a walk that may segment (segments None, the rule's) runs fused from one sequence up
    segmentable = plan_scan(sizes, 132, SSDTuning(block_p=64, block_q=64))
    assert len(segmentable.variants["bf16", True]) == 1 and segmentable.select("bf16", True, 1).forward["FUSED"]
    assert segmentable.select("bf16", True, 1).rule == "b*H*2 fused programs in segments >= 132 multiprocessors / 4"
    never = plan_scan(sizes, 132, SSDTuning(block_p=32, fused=False))
    assert len(never.variants["bf16", True]) == 1 and not never.select("bf16", True, 10_000).forward["FUSED"]
    interpreter = plan_scan(sizes, None, SSDTuning(block_p=64, block_q=64))
    assert not interpreter.select("bf16", True, 10_000).forward["FUSED"]


def test_split_when_busy_needs_a_state_passing_program_per_multiprocessor():
    """At (P, N) = (128, 128) in bf16 the training plan takes the split form's tiles once b * H state-passing
    programs cover the multiprocessors, the batch-dependent fused-or-split tuning below that, without
    multiprocessors and in inference."""
    split = tuning_table.lookup("*", "bf16", 128, 128, tuning_table.TRAINING_BUSY)
    tuned = tuning_table.lookup("*", "bf16", 128, 128)
    assert split is not None and tuned is not None and split != tuned
    assert tunings_by_batch(_sizes(32, 128, 128), "bf16", True, 132) == [
        (1, tuned, "b*H state-passing programs < 132 multiprocessors"),
        (5, split, "b*H state-passing programs >= 132 multiprocessors")]  # 5 * 32 >= 132 > 4 * 32
    assert tunings_by_batch(_sizes(32, 128, 128), "bf16", False, 132) == [(1, tuned, "")]
    assert tunings_by_batch(_sizes(32, 128, 128), "bf16", True, None) == [(1, tuned, "")]
    assert tunings_by_batch(_sizes(32, 128, 128), "fp32", True, 132) == [(1, tuning.FP32_TUNING, "")]
    plan = plan_scan(_sizes(16, 128, 128), 132)
    forms = [(v.min_batch, v.forward["FUSED"], v.rule) for v in plan.variants["bf16", True]]
    assert forms == [(1, True, "b*H state-passing programs < 132 multiprocessors and b*H*2 fused programs in "
                               "segments >= 132 multiprocessors / 4"),
                     (9, False, "b*H state-passing programs >= 132 multiprocessors")]
    assert plan.select("bf16", True, 9).forward["BLOCK_Q"] == 64 and plan.select("bf16", False, 9).forward["FUSED"]


@pytest.mark.parametrize("needs_grad", [True, False], ids=["training", "inference"])
def test_fused_forward_constants_hold_only_what_its_kernels_read(needs_grad):
    """Tunings that differ only in the split kernels' tiles give one fused module: its constants (and so
    its cache key and header) leave those tiles out, SCORE_BLOCK too: it saves no scores, its backward forms
    them (FORMS_SCORES)."""
    meta = dict(device="meta", dtype=torch.bfloat16)
    x, B = torch.empty(2, 64, 8, 64, **meta), torch.empty(2, 64, 1, 64, **meta)
    constants = [chunk.call_constants(x, None, B, 64, False, True, tuning, needs_grad=needs_grad)
                 for tuning in (SSDTuning(block_q=32, fused=True),
                                SSDTuning(block_q=32, block_n=16, state_block_q=16, output_block_n=16,
                                          heads_per_program=2, split_diagonal=False, fused=True))]
    (forward, backward), (other_forward, other_backward) = constants
    assert forward == other_forward and forward["FUSED"]
    assert not FUSED_UNREAD & set(forward)
    assert "SCORE_BLOCK" not in forward and backward["FORMS_SCORES"]
    assert backward != other_backward and FUSED_UNREAD <= set(backward)  # the backward reads them all
    split_backward = chunk.call_constants(x, None, B, 64, False, True, SSDTuning(block_q=32, fused=False))[1]
    assert "FORMS_SCORES" not in split_backward  # the split forward saved its own
    source = render_kernel("ssd_forward.py.jinja", forward, HEADER)
    assert "BLOCK_N" not in source and "HEADS_PER_PROGRAM" not in source and "SPLIT_DIAGONAL" not in source


def test_side_stream_scores_is_the_split_forwards_launch_choice():
    """Only the split forward has a state passing for the scores kernel to run beside: its constants carry the
    choice (so the module's header shows it), the fused forward's and the backward's do not. The results are the
    same either way (off CUDA the launches stay on one stream; on CUDA the output kernel waits for both)."""
    meta = dict(device="meta", dtype=torch.bfloat16)
    x, B = torch.empty(2, 64, 8, 64, **meta), torch.empty(2, 64, 1, 64, **meta)
    beside = SSDTuning(block_p=32, block_q=16, block_n=32, fused=False, side_stream_scores=True)
    forward, backward = chunk.call_constants(x, None, B, 64, False, True, beside)
    assert forward["SIDE_STREAM_SCORES"] is True and "SIDE_STREAM_SCORES" not in backward
    fused, _ = chunk.call_constants(x, None, B, 64, False, True, dataclasses.replace(beside, fused=True))
    assert "SIDE_STREAM_SCORES" not in fused
    assert "SIDE_STREAM_SCORES = True" in render_kernel("ssd_forward.py.jinja", forward, HEADER)
    torch.manual_seed(7)
    x, log_a, B, C, _ = (t.float().to(DEVICE) for t in make_inputs(b=2, L=45, H=4, P=32, G=2, N=32))
    outputs = [ssd_chunked_triton(x, log_a, B, C, 32, tuning=dataclasses.replace(beside, side_stream_scores=side))
               for side in (True, False)]
    for got, want in zip(*outputs):
        assert torch.equal(got, want)


def test_tiles_too_large_for_the_gpu_say_which_kernel_and_which_fields_to_lower():
    """Triton's OutOfResources (raised when a kernel compiles on the GPU) reaches the user as a ValueError
    that names the kernel and the SSDTuning fields, not as a traceback from inside Triton."""
    from triton.runtime.errors import OutOfResources

    launched = []

    class TooLarge:
        __name__ = "chunk_scan_fwd"

        def __getitem__(self, grid):
            def run(**arguments):
                launched.append(arguments)
                raise OutOfResources(247296, 232448, "shared memory")
            return run

    with pytest.raises(ValueError, match=r"chunk_scan_fwd needs 247296 of shared memory .* 3 stages; this GPU has "
                                         r"232448\. .*SSDTuning\(block_q=") as caught:
        chunk.launch(TooLarge(), (1,), dict(num_warps=4, num_stages=3), x_ptr="x", log_a_ptr=None)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert launched == [dict(x_ptr="x", num_warps=4, num_stages=3)]  # absent arguments are left out


def test_a_register_cap_too_low_for_a_kernel_says_so():
    """ptxas refusing a kernel under SSDTuning.max_registers reaches the user as a ValueError naming the kernel,
    the cap and the count ptxas asks for; a ptxas failure without a cap is Triton's own error."""
    from triton.runtime.errors import PTXASError

    class Refused:
        __name__ = "chunk_scores_fwd"

        def __getitem__(self, grid):
            def run(**arguments):
                raise PTXASError("ptxas fatal : (C7602) Insufficient registers (40) to compile instruction. Try to "
                                 "compile with register target of 58 or higher.")
            return run

    with pytest.raises(ValueError, match=r"chunk_scores_fwd cannot be compiled in max_registers=40 .* at least 58\. "
                                         r"Raise SSDTuning\.max_registers"):
        chunk.launch(Refused(), (1,), dict(num_warps=4, num_stages=3, maxnreg=40))
    with pytest.raises(PTXASError):
        chunk.launch(Refused(), (1,), dict(num_warps=4, num_stages=3))


def test_launch_options_give_the_state_passing_kernels_their_own_warps_and_cap_the_others():
    meta = dict(device="meta", dtype=torch.bfloat16)
    x, B = torch.empty(2, 64, 8, 64, **meta), torch.empty(2, 64, 1, 64, **meta)
    capped = SSDTuning(num_warps=8, state_num_warps=4, max_registers=128, state_num_stages=2, fused=False)
    forward, backward = chunk.call_constants(x, None, B, 64, False, True, capped)
    assert chunk.launch_options(forward) == dict(num_warps=8, num_stages=3, maxnreg=128)
    assert chunk.launch_options(forward, state_passing=True) == dict(num_warps=4, num_stages=2)
    assert "MAX_REGISTERS = 128" in render_kernel("ssd_forward.py.jinja", forward, HEADER)
    # the backward inherits the forward's choices when the tuning has none of its own
    assert chunk.launch_options(backward) == dict(num_warps=8, num_stages=3, maxnreg=128)
    plain, _ = chunk.call_constants(x, None, B, 64, False, True, SSDTuning(num_warps=8, fused=False))
    assert "MAX_REGISTERS" not in plain and chunk.launch_options(plain, state_passing=True)["num_warps"] == 8
    fused, _ = chunk.call_constants(x, None, B, 64, False, True, dataclasses.replace(capped, fused=True))
    assert "STATE_NUM_WARPS" not in fused and chunk.launch_options(fused)["maxnreg"] == 128
    with pytest.raises(ValueError, match="max_registers = 16 must be 24 to 255"):
        chunk.call_constants(x, None, B, 64, False, True, SSDTuning(max_registers=16))


def test_inputs_whose_block_offsets_pass_int32_are_refused_before_any_kernel():
    """The fused walk offsets inside a block in int32: chunk_len * H * P (or G * N) at 2**31 is refused with
    a way out, and just below it passes the check (meta tensors: nothing is allocated)."""
    meta = dict(device="meta", dtype=torch.bfloat16)
    B = torch.empty(1, 16, 1, 16, **meta)
    with pytest.raises(ValueError, match=r"chunk_len \* max\(H \* P, G \* N\) = 2147483648 must stay below 2\*\*31"):
        chunk.check_inputs(torch.empty(1, 16, 2**17, 64, **meta), None, B, B, 256, None)
    chunk.check_inputs(torch.empty(1, 16, 2**16, 64, **meta), None, B, B, 256, None)


@pytest.mark.parametrize("decay, use_h0, segments", [("data", True, 4), ("data", False, 2), ("none", True, 4)])
def test_segmented_fused_walk_matches_reference(decay, use_h0, segments):
    """The fused walk over segments side by side (tuning.segments): each segment starts from the state a
    state passing over the segments gives it, so outputs, the final state and every gradient (the backward
    reads the walk's per-chunk states) are the whole walk's."""
    torch.manual_seed(11 + segments)
    inputs = make_inputs(b=2, L=128, H=4, P=16, G=2, N=16)
    tuning = SSDTuning(block_p=16, block_q=16, fused=True, segments=segments)
    (y_ref, s_ref, g_ref), (y, s, g) = run_both(inputs, 16, decay, use_h0, tuning)
    assert_matches(y, y_ref, "y")
    assert_matches(s, s_ref, "final_state")
    for name, got, want in zip(GRAD_NAMES, g, g_ref):
        if (name == "log_a" and decay == "none") or (name == "initial_state" and not use_h0):
            assert got is None
        else:
            assert_matches(got, want, f"d{name}")


def test_segmented_walk_takes_dt_and_skip_as_the_whole_walk():
    torch.manual_seed(12)
    x, log_a, B, C, _ = (t.float().to(DEVICE) for t in make_inputs(b=1, L=96, H=4, P=16, G=2, N=16))
    dt, D = torch.rand(1, 96, 4, device=DEVICE) + 0.1, torch.randn(4, device=DEVICE)
    with torch.no_grad():
        whole, _ = ssd_chunked_triton(x, log_a, B, C, 16, dt=dt, D=D, tuning=SSDTuning(16, 16, fused=True))
        parts, _ = ssd_chunked_triton(x, log_a, B, C, 16, dt=dt, D=D,
                                      tuning=SSDTuning(16, 16, fused=True, segments=3))
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="segments"):  # 96 steps are not 4 segments of whole 16-step chunks
        ssd_chunked_triton(x, log_a, B, C, 32, tuning=SSDTuning(16, 16, fused=True, segments=2))


def test_fused_segments_fill_the_gpu_only_where_the_walk_leaves_it_idle():
    """b * H * P // block_p walk programs: 256 (b=8, H=32, P=64) and 128 keep one segment; 64 (b=2) take
    four, each of whole chunks, at least SEGMENT_MIN_CHUNKS; without multiprocessors one. The plan states the
    rule; the launcher asks it with the batch and the length."""
    assert tuning.fused_segments(256, 8192, 256, 132) == 1
    assert tuning.fused_segments(64, 32768, 256, 132) == 4
    assert tuning.fused_segments(128, 16384, 256, 132) == 1  # past half the multiprocessors
    assert tuning.fused_segments(66, 32768, 256, 132) == 4 and tuning.fused_segments(67, 32768, 256, 132) == 1
    assert tuning.fused_segments(64, 2048, 256, 132) == 2  # 4 chunks a segment at most two segments
    assert tuning.fused_segments(64, 32768 + 256, 256, 132) == 1  # 129 chunks split into no whole halves
    assert tuning.fused_segments(64, 32768, 256, None) == 1
    sizes = ScanSizes(head_dim=64, state=128, chunk=256, heads=32, groups=8, decays=True, has_dt=True)
    walk = plan_scan(sizes, 132).select("bf16", False, 2)
    assert walk.forward["FUSED"] and walk.segments(2, 32768) == 4 and walk.segments(8, 32768) == 1
    launch = walk.forward_launch(2, 32768)
    assert launch.segments == 4 and launch.constants["HAS_INITIAL_STATE"] and not walk.forward["HAS_INITIAL_STATE"]
    assert launch.segment_state is walk.segment_state and not launch.segment_state["FUSED"]
    assert walk.forward_launch(8, 32768) == (walk.forward, 1, None, 1)
    fixed = plan_scan(sizes, None, SSDTuning(block_p=64, fused=True, segments=2)).select("bf16", True, 2)
    assert fixed.segments(2, 2048) == 2


@pytest.mark.parametrize("decay", ["none", "data"])
@pytest.mark.parametrize("flag", [None, "HAS_DT", "HAS_INITIAL_STATE", "RETURN_FINAL_STATE"])
@pytest.mark.parametrize("module", ["segment_state", "segmented_backward", "forms_scores", "segmented_forms_scores"])
def test_rendered_segment_kernels_are_formatted_python(decay, flag, module):
    """The segments' state passing (pieces side by side, then their combine), the segmented backward's state
    passing (each segment's own gradient, the arriving gradients, then the walk from them) and the backward
    that forms the scores a fused forward did not save render formatted."""
    constants = {**CONSTANTS, "DECAY": decay, "HAS_DT": False, "HAS_D": False, "HAS_INITIAL_STATE": False,
                 "RETURN_FINAL_STATE": False}
    if flag:
        constants[flag] = True
    if module == "segment_state":
        constants = {**constants, **SPLIT_FORM, "LEAVING_STATE_ONLY": True, "RETURN_FINAL_STATE": True}
        source = render_kernel("ssd_forward.py.jinja", constants, HEADER)
        kernels = ("def state_passing_fwd", "def segment_entering_fwd")
    else:
        segmented, forms_scores = "segmented" in module, "forms_scores" in module
        source = render_kernel("ssd_backward.py.jinja", {**constants, "SEGMENTED": segmented,
                                                         "FORMS_SCORES": forms_scores}, HEADER)
        kernels = ("def segment_grad_bwd", "def segment_arriving_bwd") * segmented + ("def state_passing_bwd",)
        assert ("def chunk_scores_bwd" in code_only(source)) == forms_scores
    assert_formatted(source)
    code = code_only(source)
    assert all(kernel in code for kernel in kernels)
    assert ("totals_ptr" in code) == (decay == "data" and module != "forms_scores")


@pytest.mark.parametrize("decay, use_h0, segments, pieces", [("data", True, 2, 2), ("data", False, 2, 4),
                                                             ("none", True, 4, 2), ("data", True, 1, 1)])
def test_segmented_backward_and_state_pieces_match_reference(decay, use_h0, segments, pieces):
    """The backward's state passing in segments (the backward tuning's `segments`: each segment's own gradient,
    the gradients arriving at their ends, then the segments side by side from those) and the forward's state
    passing in pieces of each walk segment (`state_pieces`) change no output, final state or gradient. Ragged
    heads per group (3 heads, 1 group) and a final-state gradient reach the arriving gradients' combine."""
    torch.manual_seed(21 + segments * 3 + pieces)
    inputs = make_inputs(b=2, L=128, H=3, P=16, G=1, N=32)
    forward_segments = 2 if segments == 1 else segments
    tuning = SSDTuning(block_p=16, block_q=16, block_n=16, fused=True, segments=forward_segments, state_pieces=pieces,
                       backward=SSDTuning(block_p=16, block_q=16, block_n=16, segments=segments))
    (y_ref, s_ref, g_ref), (y, s, g) = run_both(inputs, 16, decay, use_h0, tuning)
    assert_matches(y, y_ref, "y")
    assert_matches(s, s_ref, "final_state")
    for name, got, want in zip(GRAD_NAMES, g, g_ref):
        if (name == "log_a" and decay == "none") or (name == "initial_state" and not use_h0):
            assert got is None
        else:
            assert_matches(got, want, f"d{name}")


def test_segmented_backward_takes_dt_and_skip_and_no_final_state():
    """dt and D beside a segmented backward (and a segmented walk in pieces), without a final state: the
    gradients are the unsegmented scan's."""
    torch.manual_seed(23)
    x, log_a, B, C, _ = (t.float().to(DEVICE) for t in make_inputs(b=1, L=96, H=4, P=16, G=2, N=16))
    dt, D = torch.rand(1, 96, 4, device=DEVICE) + 0.1, torch.randn(4, device=DEVICE)
    grads = []
    for tuning in (SSDTuning(16, 16, fused=True, backward=SSDTuning(16, 16, 16)),
                   SSDTuning(16, 16, fused=True, segments=3, state_pieces=2, backward=SSDTuning(16, 16, 16, segments=3))):
        leaves = [t.clone().requires_grad_() for t in (x, log_a, B, C, dt, D)]
        y, _ = ssd_chunked_triton(*leaves[:4], 16, return_final_state=False, dt=leaves[4], D=leaves[5], tuning=tuning)
        y.square().sum().backward()
        grads.append([y.detach()] + [leaf.grad for leaf in leaves])
    for name, got, want in zip(("y", "x", "log_a", "B", "C", "dt", "D"), *grads):
        # fp32 against fp32, summed in other orders: the gradients reach 3e3 here (log_a's), so the bound is
        # relative to each one's scale, not a fixed 1e-4 (a 5e-4 difference at 3e3 is fp32 rounding)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * want.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")
    with torch.no_grad():  # inference: the state passing forms its own cumulative decays
        pieces, final = ssd_chunked_triton(x, log_a, B, C, 16, dt=dt, D=D,
                                           tuning=SSDTuning(16, 16, fused=True, segments=3, state_pieces=2))
        whole, whole_final = ssd_chunked_triton(x, log_a, B, C, 16, dt=dt, D=D, tuning=SSDTuning(16, 16, fused=True))
    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final, whole_final, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="backward's tuning.segments"):  # 6 chunks are not 4 whole segments
        leaves = [t.clone().requires_grad_() for t in (x, log_a, B, C)]
        ssd_chunked_triton(*leaves, 16, tuning=SSDTuning(16, 16, fused=True, backward=SSDTuning(16, 16, 16, segments=4)))


def test_state_pieces_and_backward_segments_fill_the_gpu_where_their_programs_leave_it_idle():
    """The segments' state passing splits each segment into pieces until its programs reach
    STATE_PROGRAMS_PER_MULTIPROCESSOR (2) a multiprocessor, pieces of whole chunks (two or more); the backward's
    state passing segments only where its programs number at most half the multiprocessors, until they reach
    BACKWARD_PROGRAMS_PER_MULTIPROCESSOR (4). The plan states both rules; the launcher asks them with the batch
    and the length."""
    # b=2, H=32, P=64: 64 walk programs in 4 segments fill the 2 * 132 slots; b=1 at 4096 steps: 4 segments of 32
    assert tuning.state_pieces(64, 4, 32768, 256, 132) == 1
    assert tuning.state_pieces(32, 4, 4096, 256, 132) == 2
    assert tuning.state_pieces(32, 4, 2048, 256, 132) == 1  # pieces of 1 chunk are too short
    assert tuning.state_pieces(256, 1, 8192, 256, 132) == 1 and tuning.state_pieces(32, 4, 4096, 256, None) == 1
    # backward: 2 state tiles a head, H=32: b=1 (64 programs) takes 4 segments at 32k, b=2 (128) one
    assert tuning.backward_segments(64, 32768, 256, 132) == 4
    assert tuning.backward_segments(128, 32768, 256, 132) == 1
    assert tuning.backward_segments(64, 2048, 256, 132) == 1  # 8 chunks: segments of 32 chunks at least
    # 16384: two segments of 32 chunks would fit, but fewer than four walk whole (BACKWARD_SEGMENT_MIN_COUNT)
    assert tuning.backward_segments(64, 8192, 256, 132) == 1 and tuning.backward_segments(64, 16384, 256, 132) == 1
    assert tuning.backward_segments(64, 65536, 256, 132) == 8 and tuning.backward_segments(32, 65536, 256, 132) == 8
    assert tuning.backward_segments(64, 131072, 256, 132) == 8  # four programs a multiprocessor, not 16 segments
    assert tuning.backward_segments(64, 32768 + 256, 256, 132) == 1 and tuning.backward_segments(64, 32768, 256, None) == 1
    sizes = ScanSizes(head_dim=64, state=128, chunk=256, heads=32, groups=8, decays=True, has_dt=True)
    variant = plan_scan(sizes, 132).select("bf16", True, 1)
    assert [(launch.segments, launch.state_pieces) for launch in (variant.forward_launch(1, 32768),
                                                                   variant.forward_launch(1, 4096))] == [(8, 1), (4, 2)]
    backward = variant.backward_launch(1, 32768)
    assert backward.segments == 4 and backward.constants["SEGMENTED"] and "SEGMENTED" not in variant.backward
    assert variant.backward_launch(8, 8192) == (variant.backward, 1)
    assert plan_scan(sizes, 132).select("bf16", False, 1).backward_launch(1, 32768) is None


def test_segmented_paths_in_bf16_match_reference_to_its_precision():
    """bf16 inputs (bf16 operands where compiled, BF16_OPERAND) through the segmented walk in pieces and the
    segmented backward: y, the
    final state and every gradient within bf16's rounding of the fp64 reference (relative norm 2e-2, as the GPU
    checks take), as the whole walk and backward are. Sizes 32, the smallest 16-bit tiles the plan takes
    (SMALLEST_16BIT_SIZE: at 16 the H200's dx is wrong)."""
    torch.manual_seed(17)
    inputs = [t.to(torch.bfloat16) for t in make_inputs(b=1, L=256, H=4, P=32, G=2, N=32)]
    segmented = SSDTuning(32, 32, 32, operand=BF16_OPERAND, fused=True, segments=4, state_pieces=2,
                          backward=SSDTuning(32, 32, 32, operand=BF16_OPERAND, segments=4))
    whole = SSDTuning(32, 32, 32, operand=BF16_OPERAND, fused=True, segments=1,
                      backward=SSDTuning(32, 32, 32, operand=BF16_OPERAND, segments=1))
    grads = []
    for dtype, tuning in ((torch.float64, None), (torch.bfloat16, segmented), (torch.bfloat16, whole)):
        leaves = [t.to(dtype=dtype, device=DEVICE if tuning else "cpu", copy=True).requires_grad_() for t in inputs]
        if tuning is None:
            y, s = ssd_chunked(*leaves[:4], 32, leaves[4])
        else:
            y, s = ssd_chunked_triton(*leaves[:4], 32, leaves[4], tuning=tuning)
        torch.manual_seed(3)
        (y.double() * torch.randn(y.shape, dtype=torch.float64, device=y.device)).sum().add(s.double().sum()).backward()
        grads.append([y.detach(), s.detach()] + [leaf.grad for leaf in leaves])
    reference, *kernels = grads
    for got in kernels:
        for name, g, want in zip(("y", "final_state") + GRAD_NAMES, got, reference):
            error = ((g.cpu().double() - want).norm() / want.norm()).item()
            assert error < 2e-2, f"{name}: relative error {error:.2e}"


def test_16bit_inputs_at_sizes_below_32_multiply_as_fp32():
    """SMALLEST_16BIT_SIZE (kernels/plan.py): bf16 products at 16-wide tiles failed the backward's check on the
    H200, so the plan gives such scans fp32 operands (both directions alike: the backward reads what the forward
    saved in the operand type); at production sizes, and where a tuning names its operand, 16-bit operands stay."""
    from composer.kernels.semiseparable.plan import ScanSizes, plan_scan

    def operands(P, N, Q, tuning=None):
        variant = plan_scan(ScanSizes(P, N, Q, 4, 1, decays=True), 132, tuning).select("bf16", True, 1)
        return {variant.forward["OPERAND"], variant.backward["OPERAND"]}
    assert operands(16, 64, 64) == operands(64, 16, 64) == operands(64, 64, 16) == {"fp32"}
    assert operands(64, 128, 256) == operands(32, 32, 32) == {"bf16"}
    assert operands(16, 16, 16, SSDTuning(16, 16, 16, operand="bf16")) == {"bf16"}
