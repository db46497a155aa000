"""Decoding on the GPU: the cache path's bf16 error against the fp32 full forward, Mamba-2 130M's decode time
at two batch sizes, and the SSD step kernel against mamba_ssm's `selective_state_update` at its shapes.

    python benchmarks/decode.py [--out FILE]

mamba_ssm's whole `Mamba2.step` (its module, conv update and CUDA graph) is not among the peer files in
.peers/, so the peer comparison is the state-update kernel alone, which also does dt's softplus, D and the
z gate that our step leaves to the layer; the model's decode is timed on its own, without CUDA graphs.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path

import torch
import triton.testing

import composer
from composer.decoding import time_decode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def say(out, line: str) -> None:
    print(line, flush=True)
    out.write(line + "\n")
    out.flush()


def shortened_mamba(layers: int):
    text = (ROOT / "examples" / "mamba2_130m.mix").read_text()
    return composer.loads(re.sub(r"\* 24", f"* {layers}", text))


@torch.no_grad()
def bf16_error(out) -> None:
    """Prefill (in two pieces, a left-padded row) + decode in bf16 with the kernels against the fp32 reference
    forward of the same weights; max |difference| over max |logit|, per position kind."""
    torch.manual_seed(0)
    spec = shortened_mamba(4)
    reference = composer.build(spec, backend="reference").cuda().eval()
    fast = composer.build(spec, backend="auto").cuda().eval()
    fast.load_state_dict(reference.state_dict())
    fast = fast.to(torch.bfloat16)
    for batch, prompt_len, new in ((1, 300, 16), (4, 1000, 8)):
        tokens = torch.randint(0, 50277, (batch, prompt_len + new), device="cuda")
        full = reference(tokens).float()
        scale = full.abs().max().item()
        cache = fast.allocate_cache(batch, prompt_len + new)
        half = prompt_len // 2
        pre = torch.cat([fast(tokens[:, :half], cache=cache), fast(tokens[:, half:prompt_len], cache=cache)], 1)
        steps = torch.cat([fast(tokens[:, t:t + 1], cache=cache) for t in range(prompt_len, prompt_len + new)], 1)
        e_pre = (pre.float() - full[:, :prompt_len]).abs().max().item() / scale
        e_dec = (steps.float() - full[:, prompt_len:]).abs().max().item() / scale
        say(out, f"bf16 cache path vs fp32 forward, 4-layer Mamba-2 130M, b={batch} prompt={prompt_len} "
                 f"new={new}: prefill max err/max|logit| {e_pre:.2e}, decode {e_dec:.2e} (finite: "
                 f"{bool(torch.isfinite(steps).all())})")


@torch.no_grad()
def model_decode(out) -> None:
    spec = composer.load(ROOT / "examples" / "mamba2_130m.mix")
    model = composer.build(spec).cuda().to(torch.bfloat16).eval()
    for batch in (1, 64):
        t = time_decode(model, batch, prompt_len=128, new_tokens=64, repeats=3)
        say(out, f"mamba2_130m bf16 decode (no CUDA graph) b={batch}: prefill {t.prompt_len} tokens "
                 f"{t.prefill_ms:.2f} ms, {t.decode_ms_per_step:.3f} ms/step, {t.tokens_per_second:,.0f} tokens/s, "
                 f"cache {t.cache_bytes / 2**20:.2f} MiB, peak {t.peak_memory_bytes / 2**20:.0f} MiB")


@torch.no_grad()
def step_kernels(out) -> None:
    from composer.kernels.semiseparable.step import ssd_step_triton
    from peers import _mamba_triton
    selective_state_update = _mamba_triton("selective_state_update", "selective_state_update")
    H, P, N = 24, 64, 128
    for batch in (1, 64):
        state = torch.randn(batch, H, P, N, device="cuda")
        x = torch.randn(batch, H, P, device="cuda", dtype=torch.bfloat16)
        dt = torch.rand(batch, H, device="cuda") * 0.1
        A = -torch.rand(H, device="cuda")
        B = torch.randn(batch, 1, N, device="cuda", dtype=torch.bfloat16)
        C = torch.randn(batch, 1, N, device="cuda", dtype=torch.bfloat16)
        log_a = dt * A
        ours_y, ours_state = ssd_step_triton(state, (x.float() * dt[..., None]), log_a, B, C)
        peer_state = state.clone()
        # mamba_ssm's per-head layout: dt, A broadcast over (P) and (P, N); D and z left out
        no_bias = torch.zeros(H, P, device="cuda")
        peer_y = selective_state_update(peer_state, x.float(), dt[..., None].expand(-1, -1, P),
                                        A[:, None, None].expand(-1, P, N), B.float(), C.float(), dt_bias=no_bias)
        err = (ours_state - peer_state).abs().max().item()
        yerr = (ours_y.float() - peer_y.float()).abs().max().item() / peer_y.abs().max().item()
        t_ours = triton.testing.do_bench(lambda: ssd_step_triton(state, x.float() * dt[..., None], dt * A, B, C))
        t_peer = triton.testing.do_bench(lambda: selective_state_update(
            state.clone(), x.float(), dt[..., None].expand(-1, -1, P), A[:, None, None].expand(-1, P, N),
            B.float(), C.float(), dt_bias=no_bias))
        say(out, f"SSD step b={batch} H={H} P={P} N={N}: ours {t_ours * 1e3:.1f} us (incl. x*dt, dt*A), "
                 f"mamba_ssm selective_state_update {t_peer * 1e3:.1f} us (incl. a state clone); "
                 f"ratio {t_peer / t_ours:.2f}x; state max diff {err:.2e}, y rel diff {yerr:.2e}")


@torch.no_grad()
def host_profile(out) -> None:
    """Where a decoding step of the whole model spends host time (cProfile, 5 steps at b=1)."""
    import cProfile
    import io
    import pstats
    spec = composer.load(ROOT / "examples" / "mamba2_130m.mix")
    model = composer.build(spec).cuda().to(torch.bfloat16).eval()
    cache = model.allocate_cache(1, 64)
    token = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    for _ in range(3):
        model(token, cache=cache)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(5):
        model(token, cache=cache)
    torch.cuda.synchronize()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(18)
    say(out, text.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="decode.log")
    args = parser.parse_args()
    with open(args.out, "w") as out:
        say(out, f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
        for section in (step_kernels, host_profile, bf16_error, model_decode):
            try:
                section(out)
            except Exception:  # one failing section leaves the others' numbers
                say(out, f"{section.__name__} failed:\n{traceback.format_exc()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
