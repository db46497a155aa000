"""The delta rule's forms agree: the chunked WY/UT form equals the recurrent definition (fp32, 1e-5) forward
and in every gradient, at odd lengths, lengths that are no multiple of the chunk, key dim != value dim,
fewer key heads than value heads, from an initial state, with and without the gate."""

import pytest
import torch
import torch.nn.functional as F

from composer.kernels.delta.reference import delta_rule_chunked, delta_rule_recurrent, delta_rule_step

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def inputs(b=2, L=37, H=4, Hk=2, K=8, V=12, gate=True, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, L, Hk, K, generator=g)
    k = F.normalize(torch.randn(b, L, Hk, K, generator=g), dim=-1)
    v = torch.randn(b, L, H, V, generator=g)
    beta = torch.rand(b, L, H, generator=g)
    log_gate = -torch.rand(b, L, H, generator=g) * 0.5 if gate else None
    state = torch.randn(b, H, K, V, generator=g)
    tensors = [q, k, v, beta, log_gate, state]
    return [t.requires_grad_(requires_grad) if t is not None else None for t in tensors]


@pytest.mark.parametrize("L, chunk", [(37, 16), (1, 16), (16, 16), (64, 32), (50, 64)])
@pytest.mark.parametrize("gate", [True, False])
def test_chunked_matches_recurrent(L, chunk, gate):
    q, k, v, beta, log_gate, state = inputs(L=L, gate=gate)
    y_rec, s_rec = delta_rule_recurrent(q, k, v, beta, log_gate, initial_state=state)
    y_chunk, s_chunk = delta_rule_chunked(q, k, v, beta, log_gate, chunk, initial_state=state)
    torch.testing.assert_close(y_chunk, y_rec, **TOLERANCE)
    torch.testing.assert_close(s_chunk, s_rec, **TOLERANCE)


@pytest.mark.parametrize("H, Hk, K, V", [(3, 3, 16, 8), (4, 1, 8, 16), (2, 2, 32, 32)])
def test_chunked_matches_recurrent_across_head_layouts_without_initial_state(H, Hk, K, V):
    q, k, v, beta, log_gate, _ = inputs(L=45, H=H, Hk=Hk, K=K, V=V, seed=3)
    y_rec, s_rec = delta_rule_recurrent(q, k, v, beta, log_gate, scale=0.3)
    y_chunk, s_chunk = delta_rule_chunked(q, k, v, beta, log_gate, 16, scale=0.3)
    torch.testing.assert_close(y_chunk, y_rec, **TOLERANCE)
    torch.testing.assert_close(s_chunk, s_rec, **TOLERANCE)


@pytest.mark.parametrize("gate", [True, False])
def test_chunked_gradients_match_recurrent(gate):
    tensors = inputs(b=1, L=21, H=2, Hk=1, K=8, V=4, gate=gate, seed=5, requires_grad=True)
    q, k, v, beta, log_gate, state = tensors
    grads = []
    for form in (lambda: delta_rule_recurrent(q, k, v, beta, log_gate, initial_state=state),
                 lambda: delta_rule_chunked(q, k, v, beta, log_gate, 16, initial_state=state)):
        y, final = form()
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + final.pow(2).sum()
        leaves = [t for t in tensors if t is not None]
        grads.append(torch.autograd.grad(loss, leaves))
    for rec, chunk in zip(*grads):
        assert rec.abs().sum() > 0
        torch.testing.assert_close(chunk, rec, **TOLERANCE)


def test_a_step_is_the_recurrent_form_of_one_token():
    q, k, v, beta, log_gate, state = inputs(L=1)
    y_rec, s_rec = delta_rule_recurrent(q, k, v, beta, log_gate, initial_state=state)
    y_step, s_step = delta_rule_step(state, q[:, 0], k[:, 0], v[:, 0], beta[:, 0], log_gate[:, 0])
    torch.testing.assert_close(y_step, y_rec[:, 0], **TOLERANCE)
    torch.testing.assert_close(s_step, s_rec, **TOLERANCE)


def test_beta_one_overwrites_the_value_stored_for_a_unit_key():
    """The delta rule's point: with beta = 1 a unit key's value is replaced, not added to (read back exactly),
    while linear attention would return the sum of both writes."""
    k = F.normalize(torch.randn(1, 1, 1, 8), dim=-1).expand(1, 2, 1, 8)
    v = torch.randn(1, 2, 1, 4)
    _, state = delta_rule_recurrent(k, k, v, torch.ones(1, 2, 1))
    torch.testing.assert_close(torch.einsum("hkv,hk->hv", state[0], k[0, 0]), v[0, 1], **TOLERANCE)


def test_the_gate_decays_the_state_it_starts_from():
    q, k, v, beta, _, state = inputs(L=5)
    log_gate = torch.full(beta.shape, -0.2)
    _, gated = delta_rule_chunked(q, k, v * 0, beta * 0, log_gate, 16, initial_state=state)
    torch.testing.assert_close(gated, state * torch.exp(torch.tensor(-1.0)), **TOLERANCE)
