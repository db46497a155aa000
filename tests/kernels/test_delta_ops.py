"""The delta rule's custom ops: schema, fake kernels and autograd (opcheck), and a compiled call
(torch.compile(fullgraph=True), aot_eager: it runs the ops' own kernels) against the reference, forward and
every gradient. Runs through Triton's interpreter on the CPU (tests/conftest.py)."""

import os

import pytest
import torch
import torch.nn.functional as F

from composer.kernels.delta.chunk import delta_rule_chunked_triton, plan_for
from composer.kernels.delta.ops import plan_key, plan_of
from composer.kernels.delta.reference import delta_rule_chunked

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


def inputs(gate: bool, initial: bool, b=1, L=21, H=2, Hk=1, K=16, V=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(b, L, Hk, K, generator=g), F.normalize(torch.randn(b, L, Hk, K, generator=g), dim=-1),
               torch.randn(b, L, H, V, generator=g), torch.rand(b, L, H, generator=g),
               -torch.rand(b, L, H, generator=g) * 0.5 if gate else None,
               torch.randn(b, H, K, V, generator=g) if initial else None]
    return [None if t is None else t.to(DEVICE) for t in tensors]


@pytest.mark.parametrize("gate, initial", [(True, True), (False, False)])
def test_delta_forward_op_passes_opcheck(gate, initial):
    q, k, v, beta, log_gate, state = inputs(gate, initial)
    key = plan_key(plan_for(q, v, log_gate, 16))
    leaves = [None if t is None else t.requires_grad_() for t in (q, k, v, beta, log_gate, state)]
    torch.library.opcheck(torch.ops.composer.delta_forward.default, (*leaves, 0.25, True, key))


def test_the_plan_key_is_parsed_back_in_another_process():
    q, _, v, _, log_gate, _ = inputs(True, False)
    plan = plan_for(q, v, log_gate, 16)
    key = plan_key(plan)
    from composer.kernels.delta import ops
    ops._PLANS.pop(key)
    assert plan_of(key) == plan


def test_a_compiled_call_runs_the_ops_and_matches_the_reference_forward_and_gradients():
    tensors = [None if t is None else t.requires_grad_() for t in inputs(True, True, L=37)]

    def call(form, q, k, v, beta, log_gate, state):
        y, final = form(q, k, v, beta, log_gate, 16, initial_state=state)
        return (y * torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y)).sum() + final.square().sum()

    compiled = torch.compile(lambda *t: call(delta_rule_chunked_triton, *t), fullgraph=True, backend="aot_eager")
    got = compiled(*tensors)
    got_grads = torch.autograd.grad(got, tensors)
    want = call(delta_rule_chunked, *tensors)
    want_grads = torch.autograd.grad(want, tensors)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def test_a_delta_model_exports_through_its_op_and_loads_in_a_fresh_table(tmp_path, monkeypatch):
    import composer
    from composer.kernels.delta import ops

    spec = composer.loads("""model m {
  d_model = 32
  vocab = 40
  max_len = 64
  dtype = fp32
  block a { mixer = delta(heads = 2, head_dim = 16, key_dim = 16, chunk = 16) }
  layers = [a] * 2
}""")
    torch.manual_seed(0)
    model = composer.build(spec, backend="triton", device=DEVICE).eval()
    tokens = torch.randint(0, 40, (2, 19), device=DEVICE)
    with torch.no_grad():
        want = model(tokens)
        program = torch.export.export(model, (tokens,))
        assert "composer.delta_forward.default" in {str(n.target) for n in program.graph.nodes}
        torch.testing.assert_close(program.module()(tokens), want, rtol=1e-5, atol=1e-6)
        torch.export.save(program, tmp_path / "forward.pt2")
        monkeypatch.setattr(ops, "_PLANS", {})  # as in a fresh process: the plan is parsed from its key
        torch.testing.assert_close(torch.export.load(tmp_path / "forward.pt2").module()(tokens), want,
                                   rtol=1e-5, atol=1e-6)
