"""Check and time the generated chunked (gated) delta-rule kernels against fla's chunk_gated_delta_rule on one GPU.

    . benchmarks/device_setup.sh && python3 benchmarks/delta.py [--out DIR] [--deadline-s 200] [--warm 14]

--warm N first compiles fla's autotuning configurations in N processes at once, each its share
(peers.warm_compile_cache), so fla's own autotuning later only benchmarks them.

Checks: ours in fp32 and bf16, and fla in bf16, against our fp32 reference (kernels/delta/reference.py) at
odd lengths from an initial state (y, the final state and every gradient: q, k, v, beta, log_gate and the
initial state), with gate on and off. Timings: do_bench medians of the forward and forward+backward at
Qwen3-Next-like layer sizes (32 value heads, 16 key heads, head dims 128), bf16, both in one process, and
one decoding step against fla's fused_recurrent_gated_delta_rule at T = 1. Where fla refuses its gated backward
(Triton 3.4-3.7.0 on Hopper, fla#640), forward+backward is timed against fla's own fallback, its PyTorch
naive_chunk_gated_delta_rule, and against our reference.
fla gets the same grouped heads (its GVA), the gate in log space and beta after the sigmoid. A peer that
fails or stalls is recorded as a result, not a crash; past the deadline the rest is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from composer.kernels.delta.chunk import delta_rule_chunked_triton
from composer.kernels.delta.reference import delta_rule_chunked

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers.py beside this script
from peers import (add_warm_arguments, failure, print_row, run_isolated, take_share,  # noqa: E402
                   time_limit, warmed)

CHUNK = 64
NAMES = ["y", "final", "dq", "dk", "dv", "dbeta", "dlog_gate", "dstate0"]


def inputs(b, L, H, Hk, K, V, gate, seed, dtype):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = dict(q=torch.randn(b, L, Hk, K, device="cuda", generator=g),
             k=F.normalize(torch.randn(b, L, Hk, K, device="cuda", generator=g), dim=-1),
             v=torch.randn(b, L, H, V, device="cuda", generator=g),
             beta=torch.rand(b, L, H, device="cuda", generator=g).sigmoid(),
             log_gate=F.logsigmoid(torch.randn(b, L, H, device="cuda", generator=g) + 3) if gate else None,
             state0=torch.randn(b, H, K, V, device="cuda", generator=g) * 0.1)
    return {n: None if t is None else (t.to(dtype) if n != "state0" else t) for n, t in x.items()}


def ours(x, initial=True, final=True, plan=None):
    return delta_rule_chunked_triton(x["q"], x["k"], x["v"], x["beta"], x["log_gate"], CHUNK,
                                     initial_state=x["state0"] if initial else None, plan=plan)


def reference(x, initial=True, final=True):
    f = {n: None if t is None else t.float() for n, t in x.items()}
    return delta_rule_chunked(f["q"], f["k"], f["v"], f["beta"], f["log_gate"], CHUNK,
                              initial_state=f["state0"] if initial else None)


def peer(x, initial=True, final=True):
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    b, L, H = x["v"].shape[:3]
    log_gate = x["log_gate"] if x["log_gate"] is not None else x["v"].new_zeros(b, L, H)
    return chunk_gated_delta_rule(x["q"], x["k"], x["v"], log_gate, x["beta"],
                                  initial_state=x["state0"] if initial else None, output_final_state=final)


def fla_naive(x, initial=True, final=True):
    """fla's own PyTorch chunk form (`naive_chunk_gated_delta_rule`, fp32): its fallback where its Triton backward
    refuses this GPU and Triton. It takes a key head per value head, so the key heads are repeated as ours read
    them (value head h reads key head h // (H / Hk)); so given, it gives our reference's y and final state (3e-7
    apart in fp32 on a CPU at b=1, L=128, H=4, Hk=2, K=V=16, from an initial state)."""
    from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule
    b, L, H = x["v"].shape[:3]
    q, k = (t.repeat_interleave(H // t.shape[2], dim=2) for t in (x["q"], x["k"]))
    log_gate = x["log_gate"] if x["log_gate"] is not None else x["v"].new_zeros(b, L, H)
    return naive_chunk_gated_delta_rule(q, k, x["v"], log_gate, x["beta"], chunk_size=CHUNK,
                                        initial_state=x["state0"] if initial else None, output_final_state=final)


def outputs_and_grads(fn, x, seed):
    leaves = {n: t.detach().clone().requires_grad_() for n, t in x.items() if t is not None}
    y, final = fn({n: leaves.get(n) for n in x})
    g = torch.Generator(device="cuda").manual_seed(seed)
    dy, dfinal = torch.randn(y.shape, device="cuda", generator=g), torch.randn(final.shape, device="cuda", generator=g)
    (y.float() * dy).sum().add((final.float() * dfinal).sum()).backward()
    grads = {n: leaves[n].grad if n in leaves else None for n in ("q", "k", "v", "beta", "log_gate", "state0")}
    return [y.detach(), final.detach()] + list(grads.values())


def rel_err(out, ref) -> float:
    if out is None or ref is None:
        return float("nan") if (out is None) != (ref is None) else 0.0
    if not torch.isfinite(out).all():
        return float("nan")
    return ((out.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-30)).item()


def check(label, fn, shape, gate, dtype, limit_s, seed=1):
    try:
        x = inputs(*shape, gate=gate, seed=seed, dtype=dtype)
        with time_limit(limit_s):
            got = outputs_and_grads(fn, x, seed)
            torch.cuda.synchronize()
        want = outputs_and_grads(reference, x, seed)
        return {n: rel_err(a, b) for n, a, b in zip(NAMES, got, want)}
    except Exception as exc:  # noqa: BLE001  (a failing peer is a result)
        return failure(exc)


# (impl, shape (b, L, H, Hk, K, V), gate, dtype): small fp32 first, then the Qwen3-Next-like heads, then the
# sizes between them, so a failure names what it needs (K, L a multiple of the chunk or not, dtype, heads).
CHECKS = [("composer", (2, 333, 4, 2, 64, 64), True, "float32"),
          ("composer", (2, 333, 4, 2, 64, 64), False, "float32"),
          ("composer", (1, 777, 32, 16, 128, 128), True, "float32"),
          ("composer", (1, 777, 32, 16, 128, 128), True, "bfloat16"),
          ("composer", (1, 768, 32, 16, 128, 128), True, "bfloat16"),
          ("composer", (2, 333, 4, 2, 128, 128), True, "bfloat16"),
          ("composer", (2, 333, 4, 2, 64, 64), True, "bfloat16"),
          ("composer", (1, 777, 32, 16, 64, 64), True, "bfloat16"),
          ("composer", (1, 777, 32, 16, 128, 128), False, "bfloat16"),
          ("fla", (1, 777, 32, 16, 128, 128), True, "bfloat16")]


def check_row(index: int, errors: dict) -> dict:
    label, shape, gate, dtype = CHECKS[index]
    return {"impl": label, "shape": shape, "gate": gate, "dtype": dtype, "errors": errors}


def run_one_check(index: int, peer_limit_s: int) -> dict:
    """One check of CHECKS, in this process: what a child prints for `run_checks`."""
    label, shape, gate, dtype = CHECKS[index]
    return check_row(index, check(label, {"composer": ours, "fla": peer}[label], shape, gate, getattr(torch, dtype),
                                  peer_limit_s if label == "fla" else 0))


def run_checks(deadline: float, timeout_s: int, indices) -> list[dict]:
    """Each check of CHECKS[indices] in its own process (peers.run_isolated)."""
    rows = []
    for index in indices:
        if time.time() > deadline:
            break
        row = run_isolated([__file__, "--check", str(index), "--peer-limit-s", str(timeout_s - 60)], timeout_s)
        row = row if "errors" in row else check_row(index, row)  # the child crashed or ran out of time
        rows.append(row)
        print("check", json.dumps(row), flush=True)
    return rows


def time_call(fn, x, backward: bool) -> float:
    if not backward:
        with torch.no_grad():
            return do_bench(lambda: fn(x, initial=False, final=False), warmup=10, rep=100, return_mode="median")
    leaves = {n: t.detach().clone().requires_grad_() if t is not None and n != "state0" else None
              for n, t in x.items()}
    dy = torch.randn_like(x["v"])
    return do_bench(lambda: fn(leaves, initial=False, final=False)[0].backward(dy), warmup=10, rep=100,
                    grad_to_none=[t for t in leaves.values() if t is not None], return_mode="median")


TIMED_SHAPES = [(1, 4096, 32, 16, 128, 128), (4, 4096, 32, 16, 128, 128), (1, 16384, 32, 16, 128, 128)]


SWEEP = {  # DeltaPlan fields (upper case: its shared constants) a forward variant changes (the plan's own first)
    "prepare 4 warps": dict(prepare_warps=4), "prepare 2 warps": dict(prepare_warps=2),
    "walk 4 warps": dict(state_warps=4), "walk 4 warps 2 stages": dict(state_warps=4, forward_stages=2),
    "walk 4 warps 3 stages": dict(state_warps=4, forward_stages=3), "walk 8 warps 2 stages": dict(forward_stages=2),
    "output 4 warps": dict(output_warps=4), "output 4 warps BV 32": dict(output_warps=4, output_block=32),
    "output 8 warps BV 32": dict(output_block=32), "walk BV 64": dict(BV=64),
    "walk BV 64 4 warps 2 stages": dict(BV=64, state_warps=4, forward_stages=2)}


def forward_sweep(shapes) -> list[dict]:
    """Each SWEEP variant of the plan: its bf16 forward's error against the fp32 reference at an odd length, then
    its do_bench median (no gradient) at each shape; a variant that fails its check is not timed."""
    import dataclasses
    from composer.kernels.delta.chunk import plan_for
    check = inputs(1, 777, 32, 16, 128, 128, gate=True, seed=5, dtype=torch.bfloat16)
    want = reference(check, initial=True)[0]
    base = plan_for(check["q"], check["v"], check["log_gate"], CHUNK)
    rows = []
    for name, change in {"plan": {}, **SWEEP}.items():
        tiles = {n: v for n, v in change.items() if n.isupper()}  # constants in `shared`, the rest launch fields
        plan = dataclasses.replace(base, shared=tuple(sorted({**dict(base.shared), **tiles}.items())),
                                   **{n: v for n, v in change.items() if not n.isupper()})
        row = {"variant": name}
        try:
            with torch.no_grad():
                row["y_err"] = rel_err(ours(check, plan=plan)[0], want)
            if not row["y_err"] < 2e-2:  # NaN fails too
                raise ValueError(f"y off the reference by {row['y_err']:.1e}")
            for shape in shapes:
                x = inputs(*shape, gate=True, seed=0, dtype=torch.bfloat16)
                with torch.no_grad():
                    row[f"fwd_ms {shape[:2]}"] = round(do_bench(lambda: ours(x, initial=False, plan=plan),
                                                                warmup=10, rep=100, return_mode="median"), 4)
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        rows.append(row)
        print("sweep", json.dumps(row), flush=True)
    return rows


def forward_kernels(shape, calls: int = 5) -> dict:
    """Each GPU kernel's mean time (ms) in one bf16 forward at `shape`, ours and fla's (torch.profiler, after one
    untimed call): where the forward's time goes, the largest first."""
    from torch.profiler import ProfilerActivity, profile
    x = inputs(*shape, gate=True, seed=0, dtype=torch.bfloat16)
    rows = {}
    for label, fn in (("composer", ours), ("fla", peer)):
        with torch.no_grad():
            fn(x, initial=False, final=False)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as profiler:
                for _ in range(calls):
                    fn(x, initial=False, final=False)
                torch.cuda.synchronize()
        times = {event.key[:60]: round(event.self_device_time_total / calls / 1000, 4)
                 for event in profiler.key_averages() if event.self_device_time_total > 0}
        rows[label] = dict(sorted(times.items(), key=lambda item: -item[1]))
    return {"shape": shape, "forward_kernels_ms": rows}


def warm_share(share: str) -> dict:
    """A `warm_compile_cache` child: fla with only its share of each autotuner's configurations, run on fla's
    check case (forward and backward, which may refuse: fla#640) and forward alone at every timed shape."""
    kept = take_share("fla.ops.gated_delta_rule", share)
    _, shape, gate, dtype = CHECKS[-1]
    try:
        outputs_and_grads(peer, inputs(*shape, gate=gate, seed=1, dtype=getattr(torch, dtype)), 1)
    except Exception as exc:  # noqa: BLE001  (its refused backward still compiled its forward)
        print(f"warm {share}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
    for shape in TIMED_SHAPES:
        with torch.no_grad():
            peer(inputs(*shape, gate=True, seed=0, dtype=torch.bfloat16), initial=False, final=False)
    return {"share": share, "configs": kept}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--deadline-s", type=float, default=200)
    parser.add_argument("--peer-limit-s", type=int, default=60)
    parser.add_argument("--check", type=int, help="run only CHECKS[i], in this process, and print its row")
    parser.add_argument("--checks", default=None, help="the CHECKS to run, comma-separated indices (default all)")
    parser.add_argument("--profile", action="store_true", help="only each forward kernel's time at the timed "
                        "shapes, ours and fla's (forward_kernels)")
    parser.add_argument("--sweep", action="store_true", help="only the forward's launch variants (SWEEP)")
    add_warm_arguments(parser)
    args = parser.parse_args()
    if args.sweep:
        forward_sweep(TIMED_SHAPES[:2])
        return
    if args.profile:
        for shape in TIMED_SHAPES[:2]:
            print("profile", json.dumps(forward_kernels(shape)), flush=True)
        return
    if args.warm_share:
        print_row(warm_share(args.warm_share))
        return
    if args.check is not None:
        print_row(run_one_check(args.check, args.peer_limit_s))
        return
    start = time.time()
    results = {"env": {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                       "triton": triton.__version__}, "checks": [], "timings": []}
    print(results["env"], flush=True)
    if args.warm:
        results["warm"] = warmed([__file__], args.warm, args.deadline_s)
    out = Path(args.out, "delta_results.json")
    indices = range(len(CHECKS)) if args.checks is None else [int(i) for i in args.checks.split(",")]
    results["checks"] = run_checks(start + args.deadline_s, args.peer_limit_s + 60, indices)
    out.write_text(json.dumps(results, indent=2))
    # an implementation is timed where it passed at the timed heads in bf16; one that refuses only its backward
    # (fla's gated backward on Triton 3.4-3.7.0 on Hopper, fla#640) still has its forward timed
    failing = [row for row in results["checks"] if "error" in row["errors"]
               and row["shape"][-1] == 128 and row["dtype"] == "bfloat16"]
    failed = {row["impl"] for row in failing if "#640" not in row["errors"]["error"]}
    forward_only = {row["impl"] for row in failing} - failed
    for shape in TIMED_SHAPES:
        if time.time() - start > args.deadline_s:
            print("deadline: timings from here skipped", flush=True)
            break
        x = inputs(*shape, gate=True, seed=0, dtype=torch.bfloat16)
        row = {"shape": shape}
        # where fla refuses its backward, forward+backward is timed against its own fallback and our reference
        fallbacks = (("fla_naive", fla_naive), ("reference", reference)) if "fla" in forward_only else ()
        for label, fn in (("composer", ours), ("fla", peer), *fallbacks):
            if label in failed:
                continue
            modes = (True,) if fn in (fla_naive, reference) else (False,) if label in forward_only else (False, True)
            for backward in modes:
                key = f"{label}_{'fwdbwd' if backward else 'fwd'}_ms"
                try:
                    with time_limit(args.peer_limit_s):
                        row[key] = round(time_call(fn, x, backward), 4)
                except Exception as exc:  # noqa: BLE001
                    row[key] = float("nan")
                    row[f"{key}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        for kind in ("fwd", "fwdbwd"):
            if f"fla_{kind}_ms" in row and f"composer_{kind}_ms" in row:
                row[f"speedup_{kind}"] = round(row[f"fla_{kind}_ms"] / row[f"composer_{kind}_ms"], 3)
        for label, _ in fallbacks:
            if f"{label}_fwdbwd_ms" in row and "composer_fwdbwd_ms" in row:
                row[f"speedup_fwdbwd_vs_{label}"] = round(row[f"{label}_fwdbwd_ms"] / row["composer_fwdbwd_ms"], 3)
        results["timings"].append(row)
        print("time", json.dumps(row), flush=True)
        out.write_text(json.dumps(results, indent=2))
    for b in (1, 16, 64):  # one decoding step: ours against fla's fused_recurrent at T = 1
        if time.time() - start > args.deadline_s:
            break
        row = {"decode_batch": b}
        x = inputs(b, 1, 32, 16, 128, 128, gate=True, seed=2, dtype=torch.bfloat16)
        state = x["state0"].contiguous()
        step_args = (state, x["q"][:, 0], x["k"][:, 0], x["v"][:, 0], x["beta"][:, 0], x["log_gate"][:, 0])
        try:
            from composer.kernels.delta.chunk import delta_step_triton
            from composer.kernels.delta.reference import delta_rule_step
            got, want = delta_step_triton(*step_args), delta_rule_step(*step_args)
            row["check_y"] = rel_err(got[0], want[0])
            row["composer_step_ms"] = round(do_bench(lambda: delta_step_triton(*step_args), return_mode="median"), 4)
            from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule
            with time_limit(args.peer_limit_s):
                row["fla_step_ms"] = round(do_bench(lambda: fused_recurrent_gated_delta_rule(
                    x["q"], x["k"], x["v"], x["log_gate"], beta=x["beta"], initial_state=state,
                    output_final_state=True), return_mode="median"), 4)
            row["speedup_step"] = round(row["fla_step_ms"] / row["composer_step_ms"], 3)
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        results["timings"].append(row)
        print("time", json.dumps(row), flush=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
