"""Linear attention on the generated SSD kernels against its plain-PyTorch reference.

Runs through Triton's interpreter on the CPU (tests/conftest.py), compiled on a GPU with
TRITON_INTERPRET=0. The reference runs in fp64; the kernels in fp32.
"""

import os

import pytest
import torch

from composer.kernels.lowrank.chunk import linear_attention_chunked_triton
from composer.kernels.lowrank.reference import feature_map, linear_attention_chunked

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" or not torch.cuda.is_available() else "cuda"


def flatten_state(state):
    return list(state) if isinstance(state, tuple) else [state]


# b, H, L, F, P, chunk, causal, normalize, decay, initial state
CASES = [
    (2, 3, 37, 16, 32, 16, True, True, None, False),
    (1, 2, 45, 32, 16, 32, True, False, None, True),
    (2, 2, 40, 16, 16, 16, True, True, "fixed", True),
    (1, 3, 29, 16, 32, 16, False, True, None, False),
    (2, 2, 33, 16, 16, 16, False, False, None, True),  # non-causal: the state after the whole sequence, no scan
    (1, 2, 20, 32, 16, 16, False, True, None, True),
]


@pytest.mark.parametrize("b,H,L,F,P,chunk,causal,normalize,decay,use_h0", CASES)
def test_matches_reference_outputs_state_and_gradients(b, H, L, F, P, chunk, causal, normalize, decay, use_h0):
    torch.manual_seed(L * 10 + F)
    q = feature_map(torch.randn(b, L, H, F, dtype=torch.float64), "elu")  # positive: the normaliser stays away from 0
    k = feature_map(torch.randn(b, L, H, F, dtype=torch.float64), "elu")
    v = torch.randn(b, L, H, P, dtype=torch.float64)
    log_a = -torch.rand(H, dtype=torch.float64).expand(b, L, H).contiguous() * 0.2 if decay else None
    h0 = None
    if use_h0:
        S0 = torch.rand(b, H, P, F, dtype=torch.float64)
        h0 = (S0, torch.rand(b, H, F, dtype=torch.float64) + 1.0) if normalize else S0
    results = []
    for dtype, device, fn in ((torch.float64, "cpu", linear_attention_chunked),
                              (torch.float32, DEVICE, linear_attention_chunked_triton)):
        leaves = [t.to(dtype=dtype, device=device, copy=True).requires_grad_() for t in [q, k, v] + (
            flatten_state(h0) if h0 is not None else [])]
        state0 = None
        if h0 is not None:
            state0 = tuple(leaves[3:]) if normalize else leaves[3]
        y, state = fn(*leaves[:3], chunk, causal=causal, normalize=normalize,
                      log_a=None if log_a is None else log_a.to(dtype=dtype, device=device), initial_state=state0)
        outputs = [y] + flatten_state(state)
        sum(((o * torch.linspace(-1, 1, o.numel(), dtype=dtype, device=device).view_as(o)).sum()
             for o in outputs)).backward()
        results.append((outputs, [leaf.grad for leaf in leaves]))
    (want_out, want_grad), (got_out, got_grad) = results
    for name, got, want in zip(["y", "S", "z"], got_out, want_out):
        assert torch.isfinite(got).all(), name
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-4 * max(1.0, want.abs().max().item()),
                                   msg=lambda m: f"{name}: {m}")
    for name, got, want in zip(["dq", "dk", "dv", "dS0", "dz0"], got_grad, want_grad):
        torch.testing.assert_close(got.cpu().double(), want, rtol=1e-4, atol=1e-4 * max(1.0, want.abs().max().item()),
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("causal", [True, False])
def test_without_final_state_gives_the_same_outputs(causal):
    torch.manual_seed(5)
    q, k = (feature_map(torch.randn(1, 21, 2, 16), "elu").to(DEVICE) for _ in range(2))
    v = torch.randn(1, 21, 2, 16, device=DEVICE)
    y, state = linear_attention_chunked_triton(q, k, v, 16, causal=causal)
    y_only, none = linear_attention_chunked_triton(q, k, v, 16, causal=causal, return_final_state=False)
    assert none is None and state is not None
    torch.testing.assert_close(y_only, y)
