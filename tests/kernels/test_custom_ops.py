"""The generated kernels as torch custom ops: the ops' schemas, fake kernels and autograd (opcheck), their
results against the references, and whole models under torch.compile(fullgraph=True) and torch.export.

Runs through Triton's interpreter on the CPU (tests/conftest.py); the compiled checks use the aot_eager
backend, which runs the ops' own kernels, so they need no C++ compiler.
"""

import os
import sys

import pytest
import torch

import composer
from composer.kernels.lowrank.reference import linear_attention_chunked
from composer.kernels.norms import ops as norm_ops
from composer.kernels.norms.reference import gated_rmsnorm
from composer.kernels.semiseparable import ops
from composer.kernels.semiseparable.chunk import call_constants
from composer.kernels.semiseparable.reference import ssd_chunked
from composer.kernels.semiseparable.tuning import SSDTuning

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from core.conftest import small_spec_data  # noqa: E402

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" or not torch.cuda.is_available() else "cuda"
SMALL = SSDTuning(block_p=16, block_q=16, block_n=16, fused=False)


def ssd_inputs(b, L, H, G, P=16, N=16, decay=True, dt=True, D=True, h0=True, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)
    return dict(x=randn(b, L, H, P), log_a=-torch.rand(b, L, H, generator=generator, dtype=torch.float64)
                if decay else None, B=randn(b, L, G, N), C=randn(b, L, G, N),
                initial_state=randn(b, H, P, N) if h0 else None,
                dt=torch.rand(b, L, H, generator=generator, dtype=torch.float64) + 0.5 if dt else None,
                D=randn(H) if D else None)


def reference(x, log_a, B, C, initial_state, dt, D, chunk_len):
    log_a = torch.zeros(x.shape[:3], dtype=x.dtype) if log_a is None else log_a
    y, final_state = ssd_chunked(x if dt is None else x * dt[..., None], log_a, B, C, chunk_len, initial_state)
    return (y if D is None else y + x * D[:, None]), final_state


def op_key(inputs, chunk_len, tuning=SMALL, needs_grad=True, return_final_state=True):
    """The constants key of a call of the fp32 kernels on these inputs."""
    forward, backward = call_constants(inputs["x"].float(), inputs["log_a"], inputs["B"].float(), chunk_len,
                                       inputs["initial_state"] is not None, return_final_state, tuning,
                                       has_dt=inputs["dt"] is not None, has_D=inputs["D"] is not None,
                                       needs_grad=needs_grad)
    return ops.constants_key(forward, backward)


CASES = [  # b, L, H, G, decay, dt, D, initial state: odd lengths, several heads a group
    (2, 37, 4, 2, True, True, True, True),
    (1, 21, 3, 1, False, False, False, False),
    (2, 19, 2, 2, True, False, True, False),
]


@pytest.mark.parametrize("b,L,H,G,decay,dt,D,h0", CASES)
def test_ssd_op_passes_opcheck(b, L, H, G, decay, dt, D, h0):
    inputs = ssd_inputs(b, L, H, G, decay=decay, dt=dt, D=D, h0=h0)
    args = [None if t is None else t.float().to(DEVICE).requires_grad_()
            for t in (inputs[name] for name in ("x", "dt", "log_a", "B", "C", "initial_state", "D"))]
    torch.library.opcheck(torch.ops.composer.ssd_forward.default, (*args, op_key(inputs, 16)))


@pytest.mark.parametrize("b,L,H,G,decay,dt,D,h0", CASES)
def test_ssd_op_outputs_and_gradients_match_reference(b, L, H, G, decay, dt, D, h0):
    inputs = ssd_inputs(b, L, H, G, decay=decay, dt=dt, D=D, h0=h0)
    names = [name for name, t in inputs.items() if t is not None]
    want_leaves = {name: inputs[name].clone().requires_grad_() for name in names}
    got_leaves = {name: inputs[name].float().to(DEVICE).requires_grad_() for name in names}
    want = reference(**{**inputs, **want_leaves}, chunk_len=16)
    full = {**inputs, **got_leaves}
    got = ops.ssd_chunked_op(full["x"], full["log_a"], full["B"], full["C"], 16, full["initial_state"], True,
                             full["dt"], full["D"], SMALL, True)
    cotangents = [torch.randn_like(t) for t in want]
    want_grads = torch.autograd.grad(want, list(want_leaves.values()), cotangents)
    got_grads = torch.autograd.grad(got, list(got_leaves.values()), [c.float().to(DEVICE) for c in cotangents])
    for what, g, w in zip(("y", "final state", *(f"d{name}" for name in names)), (*got, *got_grads),
                          (*want, *want_grads)):
        scale = w.pow(2).mean().sqrt().item()
        torch.testing.assert_close(g.cpu().double(), w, rtol=1e-5, atol=1e-5 * max(scale, 1.0), msg=lambda m: f"{what}: {m}")


def test_ssd_inference_op_returns_no_saved_tensors_and_no_final_state():
    inputs = ssd_inputs(1, 21, 2, 1)
    key = op_key(inputs, 16, SSDTuning(block_p=16, block_q=16, fused=True), needs_grad=False,
                 return_final_state=False)
    args = [None if inputs[name] is None else inputs[name].float().to(DEVICE)
            for name in ("x", "dt", "log_a", "B", "C", "initial_state", "D")]
    y, final_state, scores, states, cum = torch.ops.composer.ssd_forward(*args, key)
    assert [t.numel() for t in (final_state, scores, states, cum)] == [0, 0, 0, 0]
    want, _ = reference(**inputs, chunk_len=16)
    torch.testing.assert_close(y.cpu().double(), want, rtol=1e-5, atol=1e-5 * want.pow(2).mean().sqrt().item())


def test_constants_key_spells_its_constants_for_another_process(monkeypatch):
    inputs = ssd_inputs(1, 21, 2, 1)
    key = op_key(inputs, 16)
    pair = ops.constants_of(key)
    monkeypatch.setattr(ops, "_CONSTANTS", {})  # a fresh process: the table lacks the key
    assert ops.constants_of(key) == pair


@pytest.mark.parametrize("lead,width,has_gate", [((2, 37), 96, True), ((3, 5), 64, False)])
def test_gated_rmsnorm_op_passes_opcheck_and_matches_reference(lead, width, has_gate):
    torch.manual_seed(width)
    x = torch.randn(*lead, width, dtype=torch.float64)
    gate = torch.randn(*lead, width, dtype=torch.float64) if has_gate else None
    weight = 1 + 0.5 * torch.randn(width, dtype=torch.float64)
    rows = [None if t is None else t.reshape(-1, width).float().to(DEVICE).requires_grad_() for t in (x, gate)]
    key = norm_ops.constants_key(norm_ops.norm_constants(width, has_gate))
    torch.library.opcheck(torch.ops.composer.gated_rmsnorm_forward.default,
                          (rows[0], rows[1], weight.float().to(DEVICE).requires_grad_(), 1e-5, key))

    leaves = [t for t in (x, gate, weight) if t is not None]
    want = gated_rmsnorm(*(None if t is None else t.requires_grad_() for t in (x, gate, weight)), 1e-5)
    got_leaves = [t.detach().float().to(DEVICE).requires_grad_() for t in leaves]
    got = norm_ops.gated_rmsnorm_op(got_leaves[0], got_leaves[1] if has_gate else None, got_leaves[-1], 1e-5)
    dout = torch.randn_like(want)
    for g, w in zip((got, *torch.autograd.grad(got, got_leaves, dout.float().to(DEVICE))),
                    (want, *torch.autograd.grad(want, leaves, dout))):
        torch.testing.assert_close(g.cpu().double(), w.detach(), rtol=1e-5, atol=1e-5)


MIXERS = {
    "mamba2": {"kind": "semiseparable", "state": 16, "head_dim": 16, "chunk": 16, "groups": 2},
    "lowrank": {"kind": "lowrank", "heads": 4, "head_dim": 16, "feature_dim": 16, "chunk": 16, "decay": "fixed"},
    "delta": {"kind": "delta", "heads": 4, "head_dim": 16, "key_heads": 2, "key_dim": 16, "chunk": 16},
}


def small_model(mixer: str):
    spec = composer.validate(small_spec_data(blocks={"b": {"mixer": MIXERS[mixer], "channel": "swiglu"}},
                                             layers=["b", "b"]))
    torch.manual_seed(0)
    return composer.build(spec, backend="triton", device=DEVICE)


def training_step(model):
    """One step: the loss, and every parameter's gradient (detached, so the compiled step returns no graph)."""
    def step(tokens):
        loss = model(tokens).float().square().mean()
        loss.backward()
        return loss.detach()
    return step


@pytest.fixture
def traced_backward(monkeypatch):
    """Dynamo traces loss.backward() into the step's graph (otherwise it breaks the graph there)."""
    monkeypatch.setattr(torch._dynamo.config, "trace_autograd_ops", True, raising=False)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_training_step_compiles_without_graph_breaks_and_matches_eager(mixer, traced_backward):
    model = small_model(mixer)
    tokens = torch.randint(0, 100, (2, 21), device=DEVICE)
    explanation = torch._dynamo.explain(training_step(model))(tokens)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    model.zero_grad()

    eager_loss = training_step(model)(tokens)
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled_loss = torch.compile(training_step(model), fullgraph=True, backend="aot_eager")(tokens)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for (name, p), want in zip(model.named_parameters(), eager_grads):
        torch.testing.assert_close(p.grad, want, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_no_grad_forward_exports_and_matches_eager(tmp_path, monkeypatch):
    model = small_model("mamba2").eval()
    tokens = torch.randint(0, 100, (2, 21), device=DEVICE)
    with torch.no_grad():
        want = model(tokens)
        program = torch.export.export(model, (tokens,))
        got = program.module()(tokens)
        ops_in_graph = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        assert {"composer.ssd_forward.default", "composer.gated_rmsnorm_forward.default"} <= ops_in_graph
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

        torch.export.save(program, tmp_path / "forward.pt2")
        for module in (ops, norm_ops):  # as in a fresh process: the keys' constants are parsed back
            monkeypatch.setattr(module, "_CONSTANTS", {})
        loaded = torch.export.load(tmp_path / "forward.pt2").module()(tokens)
    torch.testing.assert_close(loaded, want, rtol=1e-5, atol=1e-6)


def test_lowrank_triton_through_the_op_matches_reference():
    """The low-rank path's kernels are the SSD ones: its whole causal call goes through composer::ssd_forward."""
    from composer.kernels.lowrank.chunk import linear_attention_chunked_triton

    torch.manual_seed(1)
    q, k = (torch.rand(1, 19, 2, 16, dtype=torch.float64) for _ in range(2))
    v = torch.randn(1, 19, 2, 16, dtype=torch.float64)
    want, _ = linear_attention_chunked(q, k, v, 16)
    compiled = torch.compile(lambda q, k, v: linear_attention_chunked_triton(q, k, v, 16)[0], fullgraph=True,
                             backend="aot_eager")
    got = compiled(*(t.float().to(DEVICE) for t in (q, k, v)))
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("G,decay", [(1, True), (2, False)])
def test_step_op_passes_opcheck_and_compiles_to_the_reference(G, decay):
    from composer.kernels.semiseparable.reference import ssd_step
    from composer.kernels.semiseparable.step import ssd_step_triton, step_constants

    torch.manual_seed(G)
    b, H, P, N = 2, 4, 32, 16
    state, x_t = torch.randn(b, H, P, N), torch.randn(b, H, P)
    B_t, C_t = torch.randn(b, G, N), torch.randn(b, G, N)
    log_a_t = -torch.rand(b, H) if decay else None
    tuning = SSDTuning(block_p=16)
    inputs = [None if t is None else t.to(DEVICE) for t in (state, x_t, log_a_t, B_t, C_t)]
    key = ops.constants_key(step_constants(state, B_t, decay, tuning), {})
    torch.library.opcheck(torch.ops.composer.ssd_step.default, (*inputs, key))

    compiled = torch.compile(lambda *inputs: ssd_step_triton(*inputs, tuning=tuning), fullgraph=True,
                             backend="aot_eager")
    got = compiled(*inputs)
    want = ssd_step(state, x_t, torch.zeros(b, H) if log_a_t is None else log_a_t, B_t, C_t)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_compiled_step_takes_the_plan_and_a_dynamic_batch():
    """Through a layer's prefill plan the step's constants come from the plan's sizes, and no constant depends
    on the batch: after a second batch size one graph takes every batch."""
    from composer.kernels.semiseparable.plan import ScanSizes, plan_scan
    from composer.kernels.semiseparable.reference import ssd_step
    from composer.kernels.semiseparable.step import ssd_step_triton

    H, G, P, N = 4, 2, 32, 16
    plan = plan_scan(ScanSizes(P, N, 16, H, G, decays=True, initial_state=True, final_state=True), None)
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return torch._dynamo.backends.debugging.aot_eager(graph_module, example_inputs)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *inputs: ssd_step_triton(*inputs, plan=plan), fullgraph=True,
                             backend=counting_backend)
    for b in (1, 3, 5):
        torch.manual_seed(b)
        state, x_t, log_a_t = torch.randn(b, H, P, N), torch.randn(b, H, P), -torch.rand(b, H)
        B_t, C_t = torch.randn(b, G, N), torch.randn(b, G, N)
        got = compiled(*(t.to(DEVICE) for t in (state, x_t, log_a_t, B_t, C_t)))
        for g, w in zip(got, ssd_step(state, x_t, log_a_t, B_t, C_t)):
            torch.testing.assert_close(g.cpu(), w, rtol=1e-5, atol=1e-5)
    assert len(graphs) == 2
    torch._dynamo.reset()


def test_a_compiled_scan_with_its_plan_segments_as_eager_at_every_length(monkeypatch):
    """A handed plan's segment rule runs inside the op, at the length of each call: under a dynamic length the
    compiled scan splits the walk where eager does (a plan for 64 multiprocessors, so small inputs segment)."""
    from composer.kernels.semiseparable import chunk
    from composer.kernels.semiseparable.chunk import ssd_chunked_triton
    from composer.kernels.semiseparable.plan import ScanSizes, plan_scan

    plan = plan_scan(ScanSizes(16, 16, 16, 2, 1, decays=True), 64, SSDTuning(16, 16, fused=True))
    walked = []
    original = chunk._segment_entering_states

    def recording(state_constants, segments, *args):
        walked.append(segments)
        return original(state_constants, segments, *args)
    monkeypatch.setattr(chunk, "_segment_entering_states", recording)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, log_a, B, C: ssd_chunked_triton(x, log_a, B, C, 16, return_final_state=False,
                                                                        plan=plan)[0],
                             fullgraph=True, backend="aot_eager")
    for L in (128, 64, 256):
        inputs = ssd_inputs(1, L, 2, 1, dt=False, D=False, h0=False, seed=L)
        with torch.no_grad():
            got = compiled(*(inputs[name].float().to(DEVICE) for name in ("x", "log_a", "B", "C")))
        want, _ = reference(**inputs, chunk_len=16)
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-5 * want.pow(2).mean().sqrt().item())
    counts = [plan.select("fp32", False, 1).segments(1, L) for L in (128, 64, 256)]
    assert counts == [2, 1, 4] and walked == [2, 4]  # one segment walks whole, with no state passing first
    torch._dynamo.reset()


@pytest.mark.slow  # 55 s on a 2-core CPU (torch.compile of a training step): CI runs near its 20-minute bound
def test_a_compiled_training_scan_segments_its_backward_as_eager(monkeypatch):
    """The backward's segment rule runs inside the backward op at the call's length too: with a plan for 64
    multiprocessors a compiled training step walks the backward's state passing in segments where eager does,
    and its gradients are the reference's."""
    from composer.kernels.semiseparable import chunk
    from composer.kernels.semiseparable.chunk import ssd_chunked_triton
    from composer.kernels.semiseparable.plan import ScanSizes, plan_scan

    plan = plan_scan(ScanSizes(16, 16, 16, 2, 1, decays=True), 64, SSDTuning(16, 16, 16, fused=True))
    segmented = []
    original = chunk._segment_arriving_grads

    def recording(kernels, constants, segments, *args):
        segmented.append(segments)
        return original(kernels, constants, segments, *args)
    monkeypatch.setattr(chunk, "_segment_arriving_grads", recording)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, log_a, B, C: ssd_chunked_triton(x, log_a, B, C, 16, return_final_state=False,
                                                                        plan=plan)[0],
                             fullgraph=True, backend="aot_eager")
    inputs = ssd_inputs(1, 2048, 2, 1, dt=False, D=False, h0=False, seed=5)  # 128 chunks: 4 backward segments
    leaves = [inputs[name].float().to(DEVICE).requires_grad_() for name in ("x", "log_a", "B", "C")]
    compiled(*leaves).square().sum().backward()
    reference_leaves = [inputs[name].clone().requires_grad_() for name in ("x", "log_a", "B", "C")]
    reference(*reference_leaves, None, None, None, chunk_len=16)[0].square().sum().backward()
    for name, got, want in zip(("x", "log_a", "B", "C"), leaves, reference_leaves):
        torch.testing.assert_close(got.grad.cpu().double(), want.grad, rtol=1e-4,
                                   atol=1e-4 * want.grad.pow(2).mean().sqrt().item(), msg=lambda m: f"d{name}: {m}")
    assert plan.select("fp32", True, 1).backward_launch(1, 2048).segments == 4 and segmented == [4]
    torch._dynamo.reset()


def test_a_compiled_scan_takes_new_lengths_as_one_dynamic_graph():
    """The constants do not depend on the length: after torch.compile's second length (automatic dynamic
    shapes) one graph takes every length."""
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return torch._dynamo.backends.debugging.aot_eager(graph_module, example_inputs)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, log_a, B, C: ops_call(x, log_a, B, C), fullgraph=True, backend=counting_backend)
    for L in (21, 37, 50):
        inputs = ssd_inputs(2, L, 2, 1, dt=False, D=False, h0=False, seed=L)
        got = compiled(*(inputs[name].float().to(DEVICE) for name in ("x", "log_a", "B", "C")))
        want, _ = reference(**inputs, chunk_len=16)
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-5, atol=1e-5 * want.pow(2).mean().sqrt().item())
    assert len(graphs) == 2
    torch._dynamo.reset()


def ops_call(x, log_a, B, C):
    from composer.kernels.semiseparable.chunk import ssd_chunked_triton

    return ssd_chunked_triton(x, log_a, B, C, 16, return_final_state=False)[0]
