"""Check and time the generated gated RMSNorm against mamba_ssm's and eager PyTorch on one GPU.

    . benchmarks/device_setup.sh && python3 benchmarks/norm.py [--out DIR]

Mamba-2's output norm: out = g / rms(g) * weight with g = x * silu(z), over d_inner. The peer is
mamba_ssm's `rmsnorm_fn(x, weight, None, z=z, norm_before_gate=False)` (one group), imported from
`.peers/` by `peers.py`; eager is `kernels/norms/reference.gated_rmsnorm` (what the layer ran before).
Checks bf16 outputs and gradients against an fp64 reference, then do_bench medians of forward and
forward+backward, with the bytes each moves at best (read x, z; write out; and back).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import mamba_rmsnorm_gated  # noqa: E402

from composer.kernels.norms.gated_rmsnorm import gated_rmsnorm_triton  # noqa: E402
from composer.kernels.norms.reference import gated_rmsnorm  # noqa: E402

EPS = 1e-5


def implementations():
    peer = mamba_rmsnorm_gated()
    return {"composer": lambda x, z, w: gated_rmsnorm_triton(x, z, w, EPS),
            "mamba_ssm": lambda x, z, w: peer(x, w, None, z=z, eps=EPS, norm_before_gate=False),
            "eager": lambda x, z, w: gated_rmsnorm(x, z, w, EPS)}


def rel_err(got, want) -> float:
    if not torch.isfinite(got).all():
        return float("nan")
    return ((got.double() - want).norm() / want.norm()).item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    results = {"env": {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "triton": triton.__version__, "command": " ".join(sys.argv)}, "checks": [], "timings": []}
    print(results["env"], flush=True)
    fns = implementations()
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows, width in [(8 * 2048, 4096), (8 * 4096, 2048), (4 * 1000, 1536)]:
        x, z, dout = (torch.randn(rows, width, device="cuda", generator=g) for _ in range(3))
        w = torch.rand(width, device="cuda", generator=g) + 0.5
        exact = [t.double().requires_grad_() for t in (x, z, w)]
        want = gated_rmsnorm(*exact, EPS)
        want = [want, *torch.autograd.grad(want, exact, dout.double())]
        row = {"rows": rows, "width": width}
        for label, fn in fns.items():
            leaves = [x.bfloat16().requires_grad_(), z.bfloat16().requires_grad_(), w.clone().requires_grad_()]
            out = fn(*leaves)
            got = [out, *torch.autograd.grad(out, leaves, dout.bfloat16())]
            errors = [rel_err(a, b) for a, b in zip(got, want)]
            results["checks"].append({"impl": label, "rows": rows, "width": width, "out/dx/dz/dw": errors})
            print(f"check {label:9s} {rows}x{width} out/dx/dz/dw " + " ".join(f"{e:.1e}" for e in errors), flush=True)
            fwd = do_bench(lambda: fn(*leaves), warmup=25, rep=200, return_mode="median")
            both = do_bench(lambda: torch.autograd.grad(fn(*leaves), leaves, dout.bfloat16()), warmup=25, rep=200,
                            return_mode="median")
            row[f"{label}_fwd_ms"], row[f"{label}_fwdbwd_ms"] = fwd, both
        moved = rows * width * 2 * 3  # bf16 x, z in; out
        row["composer_fwd_GBps"] = moved / row["composer_fwd_ms"] / 1e6
        row["fwd_speedup_vs_mamba_ssm"] = row["mamba_ssm_fwd_ms"] / row["composer_fwd_ms"]
        row["fwdbwd_speedup_vs_mamba_ssm"] = row["mamba_ssm_fwdbwd_ms"] / row["composer_fwdbwd_ms"]
        results["timings"].append(row)
        print("time", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        Path(args.out, "norm_results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
