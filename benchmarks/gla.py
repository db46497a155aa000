"""Check and time the generated chunked GLA kernels against fla's chunk_gla on one GPU.

    . benchmarks/device_setup.sh && python3 benchmarks/gla.py --out FILE
    python3 benchmarks/gla.py --resources        (no GPU: registers, spills, shared memory on sm_90a)
    TRITON_INTERPRET=1 python3 benchmarks/gla.py --device cpu --tiny --out FILE   (the script's own smoke run)

Sections in this order, each failing softly (its traceback printed, the next one run; past --deadline-s the
rest is skipped):
  warm       with --warm N: N processes at once each compile their share of fla's autotuning configurations at
             every shape fla meets below (peers.warm_compile_cache), so fla's own autotuning, later and alone on
             the GPU, only benchmarks them; its seconds are reported
  resources  every kernel of the plan at GLA 340M's heads (K=128, V=256, chunk 64), bf16 and fp32, compiled for
             sm_90a by the Triton wheel's ptxas: registers, spilled bytes, shared memory (an H200 gives a program
             at most 227 KB). With --resources alone (no GPU needed), or first with --with-resources.
  checks     ours in fp32 and bf16 (and fla in bf16) against our fp32 reference (kernels/gla/reference.py,
             gla_chunked), forward and backward: o, the final state and every gradient (q, k, v, log_a, the
             initial state), each as max |err| / max |ref| and as ||err|| / ||ref||, NaN a failure; PASS within
             the dtype's tolerance. Cases: odd lengths not a multiple of the chunk, an initial state, K != V, and
             log decays down to -30 a step (a factorised exp(c_t) exp(-c_s) overflows there).
  layer      a two-layer GLA model at GLA 340M's widths as `build` makes it ("auto": the kernels on CUDA) against
             the reference backend with the same weights, fp32 and bf16: logits, every gradient, generate()
  timings    do_bench medians in bf16 (and fp32 at the first size) of the forward, forward+backward and
             inference (no_grad forward) at GLA 340M's layer sizes (b=8, L=2048, H=4, K=128, V=256) and at
             b=1, L=8192 and b=16, L=2048; ratio = fla's time / ours (above 1: ours faster).
  decode     one decoding step at GLA 340M's heads, b = 1 to 64: ours (the step kernel), the reference step and
             fla's fused_recurrent_gla over one step, errors and do_bench medians
  profile    each GPU kernel's time in one forward+backward at GLA 340M's b=8, L=2048, bf16, ours and fla's
  variants   the timings again with ours under each of VARIANTS' constants (checked among the checks)
fla gets the same q, k, v, log decays (its g) and scale 1 (our q comes scaled, as the layer scales it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peers.py beside this script
from peers import (add_warm_arguments, print_row, run_isolated, take_share, time_limit,  # noqa: E402
                   warmed)

CHUNK = 64
NAMES = ["o", "final", "dq", "dk", "dv", "dlog_a", "dstate0"]
# PASS bounds on ||err|| / ||ref|| and max |err| / max |ref| against the fp32 reference
TOLERANCE = {"fp32": (1e-4, 1e-3), "bf16": (2e-2, 5e-2)}
SIZES_340M = dict(H=4, K=128, V=256)
TIMED = [(8, 2048), (1, 8192), (16, 2048)]  # (b, L) at GLA 340M's heads


def say(*parts) -> None:
    print(*parts, flush=True)


class Budget:
    """The run's deadline (a device call's limit), and the peer's state: fla's first calls autotune and have
    stalled on Triton 3.6 / Hopper (benchmarks/README.md, linear attention), so each peer call gets
    `peer_limit_s`, and a peer that fails or runs out is not called again."""

    def __init__(self, deadline_s: float, peer_limit_s: int):
        self.end, self.peer_limit_s, self.peer_failed = time.time() + deadline_s, peer_limit_s, None

    def left(self) -> bool:
        return time.time() < self.end


def run_section(name: str, results: dict, run) -> None:
    """Run one section; a failure prints its traceback and is recorded, the next section runs."""
    say(f"== {name}")
    started = time.time()
    try:
        run()
    except Exception:  # noqa: BLE001  (a failing section is a result; the others still run)
        text = traceback.format_exc()
        say(text)
        results.setdefault("section_errors", {})[name] = text[-2000:]
    say(f"== {name}: {time.time() - started:.0f} s")


# ---- resources (no GPU) --------------------------------------------------------------------------------------

INPUT_POINTERS = {"q", "k", "v", "o", "do", "dq", "dk", "dv", "states", "dstates"}  # the inputs' dtype; the rest fp32


def resources(dtype: str, key_dim: int = SIZES_340M["K"], value_dim: int = SIZES_340M["V"],
              chunk: int = CHUNK) -> list[dict]:
    """ptxas's report for every kernel the plan renders (at GLA 340M's heads unless told), from an initial
    state, with a final state's gradient (the kernels with the most arguments)."""
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not interpreter functions
    from kernel_resources import jit_functions, sm90_report

    from composer.codegen.render import render_kernel
    from composer.kernels.gla.plan import BACKWARD_TEMPLATE, FORWARD_TEMPLATE, STEP_TEMPLATE, GLASizes, plan_gla

    plan = plan_gla(GLASizes(key_dim, value_dim, chunk, SIZES_340M["H"]))
    rows = []
    for template, constants in ((FORWARD_TEMPLATE, plan.forward_constants(dtype, True)),
                                (BACKWARD_TEMPLATE, plan.backward_constants(dtype, True, True)),
                                (STEP_TEMPLATE, dict(plan.step_constants(), NUM_STAGES=1))):
        source = render_kernel(template, constants, {"spec": "benchmarks/gla.py resources"})
        for name, kernel in jit_functions(source).items():
            if not name.startswith("gla_"):
                continue
            arguments = list(inspect.signature(kernel.fn).parameters)
            signature = {a: "i32" if not a.endswith("_ptr") else
                         f"*{dtype}" if a.removesuffix("_ptr") in INPUT_POINTERS else "*fp32" for a in arguments}
            report = sm90_report(kernel, signature, [a for a in arguments if a.endswith("_ptr")],
                                 dict(num_warps=constants["NUM_WARPS"], num_stages=constants["NUM_STAGES"]))
            row = dict(kernel=name, dtype=dtype, K=key_dim, V=value_dim, chunk=chunk, warps=constants["NUM_WARPS"],
                       registers=report["registers"], spill_stores=report["spill_stores"],
                       spill_loads=report["spill_loads"], shared_kb=report["shared"] // 1024)
            rows.append(row)
            say(f"  {name:18s} {dtype} {row['registers']:3d} registers, spills {row['spill_stores']:5d} B stored / "
                f"{row['spill_loads']:5d} B loaded, shared {row['shared_kb']:3d} KB, {row['warps']} warps")
    return rows


# ---- checks ---------------------------------------------------------------------------------------------------

def inputs(b, L, H, K, V, strength, seed, dtype, device):
    """q, k, v in `dtype`, log_a fp32 uniform in [-strength, 0] (strength 30: down to -30 a step), an initial
    state fp32. q is scaled by K^-1/2, as the layer scales it."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, device=device, generator=g)
    return dict(q=(randn(b, L, H, K) * K ** -0.5).to(dtype), k=randn(b, L, H, K).to(dtype),
                v=randn(b, L, H, V).to(dtype), log_a=-strength * torch.rand(b, L, H, K, device=device, generator=g),
                state0=randn(b, H, K, V) * 0.1)


def ours(x, initial=True, plan=None):
    from composer.kernels.gla.chunk import gla_chunked_triton
    return gla_chunked_triton(x["q"], x["k"], x["v"], x["log_a"], CHUNK,
                              initial_state=x["state0"] if initial else None, plan=plan)


# Other constants than the plan's, checked and timed beside it (the A/B a plan change would need): 32 value
# columns a program (twice the walks' programs where heads and batch are few), 4 warps in both directions, and the
# forward's kernels at 4 warps and 2 or 3 pipelining stages or at 8 and 3 (fla autotunes 1-8 warps and 2-4 stages;
# ours ran 2.2x fla's forward time at the plan's 8 warps and 2 stages on an H100, benchmarks/README.md).
VARIANTS = {"bv32": dict(BV=32), "warps4": dict(forward_warps=4, backward_warps=4),
            "fwd_warps4": dict(forward_warps=4), "fwd_warps4_stages3": dict(forward_warps=4, stages=3),
            "fwd_stages3": dict(stages=3)}


def variant_plan(name: str, key_dim: int, value_dim: int, heads: int):
    import dataclasses

    from composer.kernels.gla.plan import GLASizes, plan_gla
    plan = plan_gla(GLASizes(key_dim, value_dim, CHUNK, heads))
    change = VARIANTS[name]
    tiles = {n: min(v, dict(plan.shared)[n]) for n, v in change.items() if n.isupper()}
    launch = {n: v for n, v in change.items() if not n.isupper()}
    return dataclasses.replace(plan, shared=tuple(sorted({**dict(plan.shared), **tiles}.items())), **launch)


def variant(name: str, heads: dict):
    plan = variant_plan(name, heads["K"], heads["V"], heads["H"])
    return lambda x, initial=True: ours(x, initial, plan)


def reference(x, initial=True):
    from composer.kernels.gla.reference import gla_chunked
    f = {n: None if t is None else t.float() for n, t in x.items()}
    return gla_chunked(f["q"], f["k"], f["v"], f["log_a"], CHUNK, initial_state=f["state0"] if initial else None)


def peer(x, initial=True, final=True):
    from fla.ops.gla import chunk_gla
    return chunk_gla(x["q"], x["k"], x["v"], x["log_a"], scale=1.0, initial_state=x["state0"] if initial else None,
                     output_final_state=final)


def outputs_and_grads(fn, x, seed):
    leaves = {n: t.detach().clone().requires_grad_() for n, t in x.items()}
    o, final = fn(leaves)
    g = torch.Generator(device=o.device).manual_seed(seed)
    do = torch.randn(o.shape, device=o.device, generator=g)
    dfinal = torch.randn(final.shape, device=o.device, generator=g)
    (o.float() * do).sum().add((final.float() * dfinal).sum()).backward()
    return [o.detach(), final.detach()] + [leaves[n].grad for n in ("q", "k", "v", "log_a", "state0")]


def errors(got, want) -> dict:
    """max |err| / max |ref| and ||err|| / ||ref|| (NaN where got is missing or not finite)."""
    if got is None or not torch.isfinite(got).all():
        return dict(max=float("nan"), norm=float("nan"))
    err = got.float() - want.float()
    return dict(max=(err.abs().max() / want.abs().max().clamp_min(1e-30)).item(),
                norm=(err.norm() / want.norm().clamp_min(1e-30)).item())


def check(label, fn, shape, strength, dtype, seed, device) -> dict:
    b, L, H, K, V = shape
    x = inputs(b, L, H, K, V, strength, seed, dtype, device)
    got = outputs_and_grads(fn, x, seed)
    want = outputs_and_grads(reference, x, seed)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    norm_bound, max_bound = TOLERANCE[precision]
    row = {"impl": label, "shape": shape, "strength": strength, "dtype": precision, "errors": {}}
    passed = True
    for name, a, w in zip(NAMES, got, want):
        e = errors(a, w)
        row["errors"][name] = e
        # NaN fails both comparisons
        passed &= bool(e["norm"] <= norm_bound and e["max"] <= max_bound)
    row["verdict"] = "PASS" if passed else "FAIL"
    return row


def check_runs(device, tiny, with_peer) -> list:
    """Every check, in order: (label, implementation, (seed, (shape, strength, dtype)))."""
    if tiny:  # the smoke run: interpreter-sized, same logic
        cases = [((1, 37, 2, 16, 32), 1.0, torch.float32), ((1, 45, 1, 32, 16), 30.0, torch.float32)]
    else:
        cases = [((2, 333, 4, 64, 32), 1.0, torch.float32),                       # K != V, odd L
                 ((2, 333, 4, 128, 256), 30.0, torch.float32),                    # 340M heads, strong decays
                 ((2, 1000, 4, 128, 256), 1.0 / 16, torch.bfloat16),              # the layer's decays (/16)
                 ((2, 1000, 4, 128, 256), 30.0, torch.bfloat16),                  # strong decays in bf16
                 ((1, 517, 2, 256, 64), 5.0, torch.bfloat16),                     # the widest keys
                 ((3, 129, 3, 32, 128), 2.0, torch.float32)]                      # the narrowest keys a GPU takes
    # ours first, its variants at the strong-decay bf16 case (the last bf16 case when tiny), then the peer's bf16
    # cases (which may autotune for minutes)
    runs = [("composer", ours, case) for case in enumerate(cases)]
    seed, (shape, strength, dtype) = 3 if not tiny else 1, cases[3 if not tiny else 1]
    runs += [(f"composer_{name}", variant(name, dict(H=shape[2], K=shape[3], V=shape[4])),
              (seed, (shape, strength, dtype))) for name in VARIANTS]
    # fla at the timed heads alone: each new (K, V) makes every one of its kernels autotune again, compiling up to
    # 36 configurations each (the 256 x 64 case doubled what a device call had to compile, and none finished)
    timed_heads = (SIZES_340M["H"], SIZES_340M["K"], SIZES_340M["V"])
    runs += [("fla", peer, case) for case in enumerate(cases)
             if with_peer and case[1][2] == torch.bfloat16 and (tiny or tuple(case[1][0][2:]) == timed_heads)]
    return runs


def failed_check(label, shape, strength, dtype, error: str) -> dict:
    return {"impl": label, "shape": shape, "strength": strength, "dtype": str(dtype), "verdict": "FAIL", "error": error}


def run_one_check(index, device, tiny, with_peer, peer_limit_s) -> dict:
    """check_runs(...)[index] in this process: what a child prints for `run_checks`."""
    label, fn, (seed, (shape, strength, dtype)) = check_runs(device, tiny, with_peer)[index]
    try:
        with time_limit(peer_limit_s if label == "fla" else 0):
            return check(label, fn, shape, strength, dtype, seed, device)
    except Exception as exc:  # noqa: BLE001  (a failing case is a result)
        say(traceback.format_exc())
        return failed_check(label, shape, strength, dtype, f"{type(exc).__name__}: {str(exc)[:300]}")


def run_checks(results, device, tiny, with_peer, budget: Budget) -> None:
    """Each check in its own process (peers.run_isolated): an illegal memory access in one would fail every
    later one."""
    for index, (label, _, (seed, (shape, strength, dtype))) in enumerate(check_runs(device, tiny, with_peer)):
        if not budget.left() or (label == "fla" and budget.peer_failed):
            say(f"  skipped {label} {shape}: {'past the deadline' if not budget.left() else budget.peer_failed}")
            continue
        argv = [__file__, "--check-run", str(index), "--device", device, "--peer-limit-s", str(budget.peer_limit_s)]
        row = run_isolated(argv + ["--tiny"] * tiny + ["--no-peer"] * (not with_peer), budget.peer_limit_s + 120)
        if "verdict" not in row:  # the child itself failed: it crashed or ran out of time
            row = failed_check(label, shape, strength, dtype, row["error"])
        if label == "fla" and "error" in row:
            budget.peer_failed = f"fla failed its check: {row['error'][:200]}"
        results["checks"].append(row)
        worst = {n: f"{e['max']:.1e}/{e['norm']:.1e}" for n, e in row.get("errors", {}).items()}
        say(f"  {row['verdict']} {label:8s} {row['dtype']} shape(b,L,H,K,V)={tuple(shape)} log_a>={-strength:g} "
            f"max/norm: {worst or row.get('error')}")


def warm_share(share: str, device: str) -> dict:
    """A `warm_compile_cache` child: fla with only its share of each autotuner's configurations, run once on
    every input the checks and timings will give it (the autotune keys they meet), forward and backward."""
    kept = take_share("fla.ops.gla", share)
    cases = [case for label, _, (_, case) in check_runs(device, False, True) if label == "fla"]
    cases += [((b, L, SIZES_340M["H"], SIZES_340M["K"], SIZES_340M["V"]), 1.0 / 16, dtype)
              for index_, (b, L) in enumerate(TIMED)
              for dtype in ((torch.bfloat16, torch.float32) if index_ == 0 else (torch.bfloat16,))]
    for shape, strength, dtype in cases:
        x = inputs(*shape, strength, 0, dtype, device)
        outputs_and_grads(peer, x, 0)
        with torch.no_grad():
            peer(x, initial=False, final=False)
        del x
    return {"share": share, "configs": kept, "cases": len(cases)}


# ---- timings --------------------------------------------------------------------------------------------------

def bench(call) -> float:
    """do_bench's median on a GPU; on a CPU (the smoke run) the median of three wall-clock runs, in ms."""
    if torch.cuda.is_available():
        from triton.testing import do_bench
        return do_bench(call, warmup=25, rep=100, return_mode="median")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1e3)
    return sorted(times)[1]


def time_call(fn, x, mode: str) -> float:
    if mode == "inference":
        with torch.no_grad():
            return bench(lambda: fn(x, initial=False))
    leaves = {n: t.detach().clone().requires_grad_() for n, t in x.items() if n != "state0"}
    leaves["state0"] = None
    if mode == "fwd":
        return bench(lambda: fn(leaves, initial=False))
    do = torch.randn_like(x["v"])

    def forward_backward():
        for t in leaves.values():
            if t is not None:
                t.grad = None
        fn(leaves, initial=False)[0].backward(do)
    return bench(forward_backward)


def run_timings(results, device, tiny, with_peer, budget: Budget, variants: bool = False) -> None:
    """Ours and fla's (variants: ours with each of VARIANTS' constants instead, in rows of their own)."""
    sizes = [(1, 64)] if tiny else TIMED
    heads = dict(H=2, K=16, V=32) if tiny else SIZES_340M
    if variants:
        labels = [(f"composer_{name}", variant(name, heads)) for name in VARIANTS]
    else:
        labels = [("composer", ours)] + ([("fla", lambda x, initial=False: peer(x, initial, final=False))]
                                         if with_peer else [])
    for index, (b, L) in enumerate(sizes):
        for dtype in (torch.bfloat16, torch.float32) if index == 0 else (torch.bfloat16,):
            if not budget.left():
                say(f"  skipped b={b} L={L}: past the deadline")
                continue
            x = inputs(b, L, heads["H"], heads["K"], heads["V"], 1.0 / 16, 0, dtype, device)
            row = {"b": b, "L": L, **heads, "dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
                   "variants": variants}
            for label, fn in labels:
                for mode in ("fwd", "fwdbwd", "inference"):
                    key = f"{label}_{mode}_ms"
                    if label == "fla" and budget.peer_failed:
                        row[f"{key}_error"] = budget.peer_failed
                        continue
                    try:
                        with time_limit(budget.peer_limit_s if label == "fla" else 0):
                            row[key] = round(time_call(fn, x, mode), 4)
                    except Exception as exc:  # noqa: BLE001
                        say(traceback.format_exc())
                        row[key] = float("nan")
                        row[f"{key}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                        if label == "fla" and isinstance(exc, TimeoutError):
                            budget.peer_failed = f"fla ran out of time: {exc}"
            for mode in ("fwd", "fwdbwd", "inference"):
                if f"fla_{mode}_ms" in row and f"composer_{mode}_ms" in row:
                    row[f"ratio_{mode}"] = round(row[f"fla_{mode}_ms"] / row[f"composer_{mode}_ms"], 3)
            results["timings"].append(row)
            say("  " + json.dumps(row))
            del x
            if device == "cuda":
                torch.cuda.empty_cache()


def run_profile(results, device, tiny, with_peer, budget: Budget) -> None:
    """Each GPU kernel's time in one forward+backward at GLA 340M's b=8, L=2048 in bf16 (torch.profiler, the mean
    of 5 after 3 warm-ups), ours and fla's: where the time goes, for the next change to look at."""
    from torch.profiler import ProfilerActivity, profile
    b, L = (1, 64) if tiny else TIMED[0]
    heads = dict(H=2, K=16, V=32) if tiny else SIZES_340M
    dtype = torch.float32 if tiny else torch.bfloat16
    labels = [("composer", ours)] + ([("fla", lambda x, initial=False: peer(x, initial, final=False))]
                                     if with_peer and not budget.peer_failed else [])
    activities = [ProfilerActivity.CUDA] if device == "cuda" else [ProfilerActivity.CPU]
    for label, fn in labels:
        if not budget.left():
            return
        x = inputs(b, L, heads["H"], heads["K"], heads["V"], 1.0 / 16, 0, dtype, device)
        leaves = {n: t.detach().clone().requires_grad_() for n, t in x.items() if n != "state0"}
        leaves["state0"] = None
        do = torch.randn_like(x["v"])

        def step():
            fn(leaves, initial=False)[0].backward(do)
        try:
            with time_limit(budget.peer_limit_s if label == "fla" else 0):
                for _ in range(3):
                    step()
                with profile(activities=activities) as profiler:
                    for _ in range(5):
                        step()
                    if device == "cuda":
                        torch.cuda.synchronize()
        except Exception:  # noqa: BLE001
            say(traceback.format_exc())
            continue
        rows = []
        for event in profiler.key_averages():
            # a kernel's own device time (the ops that launch kernels have none of their own)
            total = getattr(event, "self_device_time_total", 0) if device == "cuda" else event.self_cpu_time_total
            if total > 0:
                rows.append({"kernel": event.key[:80], "us_per_step": round(total / 5, 2), "calls": event.count // 5})
        rows.sort(key=lambda row: -row["us_per_step"])
        rows = rows[:20]
        results.setdefault("profile", {})[label] = rows
        say(f"  {label} b={b} L={L} {heads} fwd+bwd, us a step:")
        for row in rows:
            say(f"    {row['us_per_step']:9.1f}  x{row['calls']}  {row['kernel']}")


LAYER_SPEC = """
model gla_check {{
  d_model = {d_model}
  vocab   = 512
  max_len = 4096
  dtype   = {dtype}
  block g {{
    mixer   = gla(head_dim = {head_dim}, chunk = {chunk})
    channel = swiglu(hidden = {hidden})
  }}
  layers = [g] * 2
}}"""


def run_layer(results, device, tiny, budget: Budget) -> None:
    """A two-layer GLA model built as `build` makes it (the layers hand their plan to the kernels; "auto" takes
    them on CUDA), against the same weights on the reference backend: logits and every parameter's gradient,
    norm-relative, and the generated prefill + decode against the reference's tokens."""
    import composer
    sizes = dict(d_model=64, head_dim=32, chunk=16, hidden=128) if tiny else dict(d_model=1024, head_dim=256,
                                                                                  chunk=64, hidden=2816)
    # the interpreter multiplies bf16 tiles wrongly (tests/kernels/test_gla_triton.py): the smoke run takes fp32
    for dtype in ("fp32",) if device != "cuda" else ("fp32", "bf16"):
        if not budget.left():
            return
        spec = composer.loads(LAYER_SPEC.format(dtype=dtype, **sizes))
        torch.manual_seed(0)
        weights = torch.bfloat16 if dtype == "bf16" else torch.float32
        models = {backend: composer.build(spec, backend=backend, device=device, dtype=weights)
                  for backend in ("reference", "auto")}
        models["auto"].load_state_dict(models["reference"].state_dict())
        if device != "cuda":  # "auto" runs the reference off CUDA: the smoke run takes the kernels explicitly
            for module in models["auto"].modules():
                if hasattr(module, "backend"):
                    module.backend = "triton"
        tokens = torch.randint(0, 512, (2, 45 if tiny else 1000), device=device)
        out = {}
        for backend, model in models.items():
            model.zero_grad()
            logits = model(tokens)
            logits.float().square().mean().backward()
            out[backend] = (logits.detach().float(), [p.grad.float() for p in model.parameters()])
        (want, want_grads), (got, got_grads) = out["reference"], out["auto"]
        grads = sorted((g - w).norm().item() / max(w.norm().item(), 1e-30) for g, w in zip(got_grads, want_grads))
        with torch.no_grad():
            prompt = tokens[:, :37]
            same = torch.equal(models["auto"].generate(prompt, max_new_tokens=4),
                               models["reference"].generate(prompt, max_new_tokens=4))
        bound = 1e-4 if dtype == "fp32" else 3e-2
        row = dict(dtype=dtype, logits=errors(got, want), grads_median=grads[len(grads) // 2], grads_max=grads[-1],
                   finite=bool(torch.isfinite(got).all()), generate_equal=same)
        row["verdict"] = "PASS" if row["finite"] and row["logits"]["norm"] <= bound and row["grads_max"] <= 10 * bound \
            else "FAIL"
        results.setdefault("layer", []).append(row)
        say("  " + json.dumps(row))


def run_decode(results, device, tiny, with_peer, budget: Budget) -> None:
    """One decoding step at GLA 340M's heads, bf16 q, k, v, an fp32 state: ours (the step kernel, state in place),
    the reference step (what the layer ran before) and fla's fused_recurrent_gla over one step, do_bench medians."""
    from composer.kernels.gla.reference import gla_step
    from composer.kernels.gla.step import gla_step_triton
    heads = dict(H=2, K=16, V=32) if tiny else SIZES_340M
    H, K, V = heads["H"], heads["K"], heads["V"]
    dtype = torch.float32 if tiny else torch.bfloat16
    for b in (1, 4) if tiny else (1, 8, 16, 64):
        if not budget.left():
            return
        g = torch.Generator(device=device).manual_seed(b)
        q, k = (torch.randn(b, H, K, device=device, generator=g).to(dtype) for _ in range(2))
        v = torch.randn(b, H, V, device=device, generator=g).to(dtype)
        log_a = -torch.rand(b, H, K, device=device, generator=g) / 16
        state = torch.randn(b, H, K, V, device=device, generator=g)
        want_o, want_state = gla_step(state.clone(), q.float(), k.float(), v.float(), log_a)
        ours_state = state.clone()
        got_o = gla_step_triton(ours_state, q, k, v, log_a)
        row = {"b": b, **heads, "o": errors(got_o, want_o), "state": errors(ours_state, want_state)}
        scratch = state.clone()
        with torch.no_grad():
            row["composer_step_ms"] = round(bench(lambda: gla_step_triton(scratch, q, k, v, log_a)), 5)
            row["reference_step_ms"] = round(bench(lambda: gla_step(state, q.float(), k.float(), v.float(),
                                                                    log_a)), 5)
            if with_peer and not budget.peer_failed:
                try:
                    from fla.ops.gla import fused_recurrent_gla
                    with time_limit(budget.peer_limit_s):
                        row["fla_step_ms"] = round(bench(lambda: fused_recurrent_gla(
                            q[:, None], k[:, None], v[:, None], gk=log_a[:, None], scale=1.0, initial_state=state,
                            output_final_state=True)), 5)
                    row["ratio_step"] = round(row["fla_step_ms"] / row["composer_step_ms"], 3)
                except Exception as exc:  # noqa: BLE001
                    say(traceback.format_exc())
                    row["fla_step_ms_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.setdefault("decode", []).append(row)
        say("  " + json.dumps(row))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="the results file (JSON); default $OUT/gla_results.json")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="interpreter-sized shapes (the smoke run)")
    parser.add_argument("--resources", action="store_true", help="only the sm_90a resource report (no GPU)")
    parser.add_argument("--with-resources", action="store_true",
                        help="the resource report first, then the rest (it needs no GPU: off by default there)")
    parser.add_argument("--sizes", default=f"{SIZES_340M['K']}x{SIZES_340M['V']}x{CHUNK}",
                        help="with --resources: KxVxchunk[,KxVxchunk...] (default GLA 340M's)")
    parser.add_argument("--no-peer", action="store_true", help="skip fla")
    parser.add_argument("--deadline-s", type=float, default=450,
                        help="sections and cases past this are skipped (a device call has 600 s, setup included)")
    parser.add_argument("--peer-limit-s", type=int, default=90, help="the most one fla call may take")
    parser.add_argument("--skip", default="", help="sections to leave out, comma-separated (e.g. profile,variants)")
    parser.add_argument("--check-run", type=int, help=argparse.SUPPRESS)  # one check, in a child of run_checks
    add_warm_arguments(parser)
    args = parser.parse_args(argv)
    if args.warm_share:
        print_row(warm_share(args.warm_share, args.device))
        return 0
    if args.check_run is not None:
        print_row(run_one_check(args.check_run, args.device, args.tiny, not args.no_peer and not args.tiny,
                                args.peer_limit_s))
        return 0
    out = Path(args.out) if args.out else Path(os.environ.get("OUT", "."), "gla_results.json")
    results: dict = {"env": {"torch": torch.__version__, "device": args.device, "argv": sys.argv[1:]},
                     "resources": [], "checks": [], "timings": []}

    def write() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))

    if args.device == "cuda" and not args.resources:
        import triton
        results["env"].update(gpu=torch.cuda.get_device_name(), triton=triton.__version__)
    say(json.dumps(results["env"]))
    if args.resources:
        def report():
            for sizes in args.sizes.split(","):
                key_dim, value_dim, chunk = map(int, sizes.split("x"))
                say(f"  K={key_dim} V={value_dim} chunk={chunk}")
                for dtype in ("bf16", "fp32"):
                    results["resources"] += resources(dtype, key_dim, value_dim, chunk)
        run_section("resources", results, report)
        write()
        return 1 if "section_errors" in results else 0
    skipped = set(filter(None, args.skip.split(",")))

    def section(name, results, run):  # run_section, unless --skip names it
        if name in skipped:
            say(f"== {name}: skipped (--skip)")
            return
        run_section(name, results, run)
    if args.with_resources and os.environ.get("TRITON_INTERPRET") != "1":
        # in a child process: compiling for sm_90a needs TRITON_INTERPRET unset before triton is imported
        section("resources", results, lambda: subprocess.run(
            [sys.executable, __file__, "--resources", "--out", str(out.with_suffix(".resources.json"))], check=True))
    with_peer = not args.no_peer and not args.tiny
    budget = Budget(args.deadline_s, args.peer_limit_s)
    if with_peer and args.warm:
        def warm():
            results["warm"] = warmed([__file__, "--device", args.device], args.warm, budget.end - time.time())
        section("warm", results, warm)
    section("checks", results, lambda: run_checks(results, args.device, args.tiny, with_peer, budget))
    write()
    section("layer", results, lambda: run_layer(results, args.device, args.tiny, budget))
    write()
    section("timings", results, lambda: run_timings(results, args.device, args.tiny, with_peer, budget))
    write()
    section("decode", results, lambda: run_decode(results, args.device, args.tiny, with_peer, budget))
    write()
    section("profile", results, lambda: run_profile(results, args.device, args.tiny, with_peer, budget))
    write()
    section("variants", results, lambda: run_timings(results, args.device, args.tiny, False, budget, variants=True))
    write()
    passed = sum(row["verdict"] == "PASS" for row in results["checks"])
    failed = [row for row in results["checks"] + results.get("layer", [])
              if row["verdict"] != "PASS" and row.get("impl", "composer") == "composer"]
    say(f"checks: {passed} of {len(results['checks'])} PASS; ours (plan's constants, and the layer): "
        f"{len(failed)} FAIL")
    return 1 if failed or "section_errors" in results else 0


if __name__ == "__main__":
    sys.exit(main())
