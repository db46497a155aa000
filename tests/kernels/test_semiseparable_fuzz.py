"""Random shapes, tiles and options for the generated SSD kernels, each checked against the reference.

The hand-picked cases in test_semiseparable_triton.py cover each option once; here hypothesis draws
combinations nobody listed: a length of 1 or just past a chunk, groups that are neither 1 nor H,
score blocks above the step blocks, forward and backward tiles that differ, the state taken whole or
in pieces by the output and dx kernels, the split and fused forwards, dt and the skip D with and without decay and initial state. Interpreted on the CPU, so the
draws stay small and few.
"""

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.kernels.semiseparable.chunk import ssd_chunked_triton
from composer.kernels.semiseparable.tuning import SSDTuning
from composer.kernels.semiseparable.reference import ssd_chunked

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" or not torch.cuda.is_available() else "cuda"
TILES = st.sampled_from([16, 32])


@st.composite
def problems(draw):
    G = draw(st.sampled_from([1, 2]))
    H = G * draw(st.sampled_from([1, 2, 3]))
    chunk = draw(st.sampled_from([16, 32, 64]))
    L = draw(st.one_of(st.integers(1, 3), st.integers(chunk - 1, chunk + 2), st.integers(1, 2 * chunk + 5)))
    tuning = SSDTuning(block_p=draw(TILES), block_q=draw(TILES), block_n=draw(TILES),
                       block_s=draw(st.sampled_from([None, 32])), heads_per_program=draw(st.sampled_from([1, 2, 3])),
                       split_diagonal=draw(st.booleans()), state_block_q=draw(st.sampled_from([None, 16])),
                       output_block_n=draw(st.sampled_from([None, 16])), fused=draw(st.booleans()),
                       backward=draw(st.sampled_from([None, SSDTuning(block_p=16, block_q=32, block_n=16),
                                                      SSDTuning(block_p=16, block_q=16, output_block_n=16)])))
    return dict(b=draw(st.integers(1, 2)), L=L, H=H, G=G, P=draw(TILES), N=draw(TILES), chunk=chunk,
                decay=draw(st.booleans()), h0=draw(st.booleans()), dt=draw(st.booleans()), D=draw(st.booleans()),
                final=draw(st.booleans()), tuning=tuning, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(problems())
def test_random_problems_match_the_reference(p):
    g = torch.Generator().manual_seed(p["seed"])
    b, L, H, G, P, N = p["b"], p["L"], p["H"], p["G"], p["P"], p["N"]
    tensors = dict(x=torch.randn(b, L, H, P, generator=g, dtype=torch.float64),
                   B=torch.randn(b, L, G, N, generator=g, dtype=torch.float64),
                   C=torch.randn(b, L, G, N, generator=g, dtype=torch.float64))
    if p["decay"]:
        tensors["log_a"] = -torch.rand(b, L, H, generator=g, dtype=torch.float64)
    if p["h0"]:
        tensors["h0"] = torch.randn(b, H, P, N, generator=g, dtype=torch.float64)
    if p["dt"]:
        tensors["dt"] = torch.rand(b, L, H, generator=g, dtype=torch.float64) + 0.1
    if p["D"]:
        tensors["D"] = torch.randn(H, generator=g, dtype=torch.float64)
    y_grad = torch.randn(b, L, H, P, generator=g, dtype=torch.float64)
    state_grad = torch.randn(b, H, P, N, generator=g, dtype=torch.float64)

    results = []
    for dtype, device in ((torch.float64, "cpu"), (torch.float32, DEVICE)):
        t = {k: v.to(dtype=dtype, device=device, copy=True).requires_grad_() for k, v in tensors.items()}
        if dtype == torch.float64:
            x_in = t["x"] * t["dt"][..., None] if p["dt"] else t["x"]
            log_a = t.get("log_a", torch.zeros(b, L, H, dtype=dtype))
            y, state = ssd_chunked(x_in, log_a, t["B"], t["C"], p["chunk"], t.get("h0"))
            y = y + t["D"][:, None] * t["x"] if p["D"] else y
        else:
            y, state = ssd_chunked_triton(t["x"], t.get("log_a"), t["B"], t["C"], p["chunk"], t.get("h0"), p["final"],
                                          dt=t.get("dt"), D=t.get("D"), tuning=p["tuning"])
        loss = (y * y_grad.to(y)).sum()
        if p["final"]:
            loss = loss + (state * state_grad.to(state)).sum()
        loss.backward()
        outputs = {"y": y, **({"final_state": state} if p["final"] else {})}
        results.append({**outputs, **{f"d{k}": v.grad for k, v in t.items()}})
    want, got = results
    assert set(got) == set(want)
    for name in want:
        assert got[name] is not None and torch.isfinite(got[name]).all(), name
        scale = max(1.0, want[name].pow(2).mean().sqrt().item())
        torch.testing.assert_close(got[name].detach().cpu().double(), want[name].detach(), rtol=1e-4,
                                   atol=1e-4 * scale, msg=lambda m: f"{name} for {p}: {m}")
