"""Check and time linear attention on composer's SSD kernels against flash-linear-attention on one GPU.

    . benchmarks/device_setup.sh && python3 benchmarks/lowrank.py [--no-decay] [--warm 14] [--out DIR]

--warm N first compiles fla's autotuning configurations in N processes at once, each its share
(peers.warm_compile_cache): fla 0.6.0 compiling them one by one as it tunes ran past a device call's limit.

The peer is fla's `chunk_simple_gla` (fla-core 0.6.0, carried as a wheel): RetNet's fixed decay
per head as `g_gamma`, or no decay when it is left out. Ours is `linear_attention_chunked_triton`
with normalize=False, the same function: y_t = sum_{s <= t} (q_t . k_s) gamma^(t - s) v_s, scale 1.
q and k are feature-mapped (elu + 1) before either sees them. Both are checked in bf16 against our
fp32 reference (forward and every gradient), then timed with do_bench medians, forward and
forward+backward. fla's gated backward has refused Triton 3.6 on Hopper before: a peer failure is
recorded as a result, not a crash.
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

from composer.kernels.lowrank.chunk import linear_attention_chunked_triton
from composer.kernels.lowrank.reference import feature_map, linear_attention_chunked
from composer.kinds.lowrank.layer import retnet_log_decay

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers.py beside this script
from peers import add_warm_arguments, print_row, take_share, time_limit, warmed  # noqa: E402

CHUNK = 64  # fla's chunk for simple_gla; ours takes the same


def inputs(b, L, H, K, V, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = feature_map(torch.randn(b, L, H, K, device="cuda", generator=g) * 0.5, "elu").to(dtype)
    k = feature_map(torch.randn(b, L, H, K, device="cuda", generator=g) * 0.5, "elu").to(dtype) / K
    v = torch.randn(b, L, H, V, device="cuda", generator=g).to(dtype)
    return q, k, v


def ours(q, k, v, gamma):
    log_a = None if gamma is None else gamma.expand(*q.shape[:3])
    y, _ = linear_attention_chunked_triton(q, k, v, CHUNK, normalize=False, log_a=log_a, return_final_state=False)
    return y


def peer(q, k, v, gamma):
    from fla.ops.simple_gla import chunk_simple_gla
    y, _ = chunk_simple_gla(q, k, v, g_gamma=gamma, scale=1.0)
    return y


def reference(q, k, v, gamma):
    log_a = None if gamma is None else gamma.expand(*q.shape[:3])
    y, _ = linear_attention_chunked(q.float(), k.float(), v.float(), CHUNK, normalize=False, log_a=log_a)
    return y


def rel_err(out, ref) -> float:
    if not torch.isfinite(out).all():
        return float("nan")
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def forward_and_grads(fn, tensors, gamma, dy):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(*leaves, gamma)
    y.backward(dy)
    return [y.detach()] + [leaf.grad for leaf in leaves]


def check(fn, shape, gamma_on, seed, limit_s=0):
    """Relative errors of y, dq, dk, dv against the fp32 reference; NaN when the call fails or takes more
    than limit_s (compilation included; 0: no limit)."""
    try:
        tensors = inputs(*shape, dtype=torch.bfloat16, seed=seed)
        gamma = retnet_log_decay(shape[2]).cuda() if gamma_on else None
        dy = torch.randn(tensors[2].shape, device="cuda", generator=torch.Generator("cuda").manual_seed(seed + 1))
        with time_limit(limit_s):
            got = forward_and_grads(fn, tensors, gamma, dy.bfloat16())
        want = forward_and_grads(reference, [t.float() for t in tensors], gamma, dy)
        return [rel_err(a, b) for a, b in zip(got, want)]
    except Exception as exc:  # noqa: BLE001  (a failing peer is a result)
        print(f"check failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        return [float("nan")] * 4


def time_call(fn, tensors, gamma, backward: bool) -> float:
    if not backward:
        return do_bench(lambda: fn(*tensors, gamma), warmup=25, rep=200, return_mode="median")
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    dy = torch.randn_like(leaves[2])
    return do_bench(lambda: fn(*leaves, gamma).backward(dy), warmup=25, rep=200, grad_to_none=leaves,
                    return_mode="median")


WARM_LIMIT_S = 600  # the most a warming child may take (a device call's limit)
CHECK_SHAPES = [(2, 1000, 4, 64, 64), (1, 777, 8, 128, 128)]
TIMED_SHAPES = [(8, 4096, 16, 128, 128), (8, 4096, 32, 64, 64), (8, 8192, 16, 128, 128)]


def warm_share(share: str, decays) -> dict:
    """A `warm_compile_cache` child: fla with only its share of each autotuner's configurations, run forward
    and backward on every shape and decay below (the autotune keys the checks and timings meet)."""
    kept = take_share("fla.ops.simple_gla", share)
    for gamma_on in decays:
        for shape in CHECK_SHAPES + TIMED_SHAPES:
            tensors = inputs(*shape, dtype=torch.bfloat16, seed=0)
            gamma = retnet_log_decay(shape[2]).cuda() if gamma_on else None
            forward_and_grads(peer, tensors, gamma, torch.randn_like(tensors[2]))
            del tensors
    return {"share": share, "configs": kept}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--peer-limit-s", type=int, default=90,
                        help="a peer configuration whose first check takes longer (compiling included) is "
                             "recorded as failed and not timed (0: no limit)")
    parser.add_argument("--no-decay", action="store_true", help="only the decay-free comparison (fla's decayed "
                        "path has stalled compiling on Triton 3.6 / Hopper)")
    add_warm_arguments(parser)
    args = parser.parse_args()
    decays = (False,) if args.no_decay else (False, True)
    if args.warm_share:
        print_row(warm_share(args.warm_share, decays))
        return
    results = {"env": {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "triton": triton.__version__}, "checks": [], "timings": []}
    print(results["env"], flush=True)
    if args.warm:
        results["warm"] = warmed([__file__] + ["--no-decay"] * args.no_decay, args.warm, WARM_LIMIT_S)
    # Without decay first: fla's decayed (g_gamma) path has stalled compiling on Triton 3.6 / Hopper, and
    # results are written as they come, so a stall there loses nothing measured before it.
    for gamma_on in decays:
        failed = set()  # implementations whose check failed or timed out at this decay: not timed
        for shape in CHECK_SHAPES:
            for label, fn in (("composer", ours), ("fla", peer)):
                if label in failed:
                    continue
                errors = check(fn, shape, gamma_on, seed=len(label) + shape[1],
                               limit_s=args.peer_limit_s if label == "fla" else 0)
                if any(e != e for e in errors):
                    failed.add(label)
                results["checks"].append({"impl": label, "shape": shape, "decay": gamma_on, "errors": errors})
                print(f"check {label:8s} {shape} decay={gamma_on} y/dq/dk/dv " + " ".join(f"{e:.1e}" for e in errors),
                      flush=True)
        for shape in TIMED_SHAPES:
            tensors = inputs(*shape, dtype=torch.bfloat16, seed=0)
            gamma = retnet_log_decay(shape[2]).cuda() if gamma_on else None
            row = {"shape": shape, "decay": gamma_on}
            for label, fn in (("composer", ours), ("fla", peer)):
                if label in failed:
                    continue
                for backward in (False, True):
                    key = f"{label}_{'fwdbwd' if backward else 'fwd'}_ms"
                    try:
                        row[key] = time_call(fn, tensors, gamma, backward)
                    except Exception as exc:  # noqa: BLE001
                        row[key] = float("nan")
                        row[f"{key}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            results["timings"].append(row)
            print("time", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            Path(args.out, "lowrank_results.json").write_text(json.dumps(results, indent=2))
        Path(args.out, "lowrank_results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
