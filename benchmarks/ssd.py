"""Check and time composer's generated SSD kernels against mamba_ssm's on one GPU.

    python benchmarks/ssd.py [--quick] [--out DIR]

One run does everything the lease allows: correctness of both implementations in bf16
against the fp32 reference (forward and every gradient), then do_bench medians of
forward and forward+backward over the issue's shapes, with achieved bandwidth and
FLOP rate against the ceilings measured on the machine (copy 3.0 TB/s, bf16 matmul
708 TFLOP/s on the H100, 2026-11-22). Both sides compute the same function from the
same inputs: y = SSD(x * dt, dt * A, B, C), dt already positive, no D, no gate.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import forget_autotuning, mamba_chunk_scan_combined  # noqa: E402

from composer.kernels.semiseparable.chunk import ssd_chunked_triton  # noqa: E402
from composer.kernels.semiseparable.chunk import default_tuning  # noqa: E402
from composer.kernels.semiseparable.tuning import SSDTuning  # noqa: E402
from composer.kernels.semiseparable.reference import ssd_chunked  # noqa: E402

CHUNK = 256
COPY_BYTES_PER_S, MATMUL_FLOPS = 3.0e12, 708e12


def inputs(b, L, H, P, G, N, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(b, L, H, P, device="cuda", generator=g).to(dtype)
    dt = torch.nn.functional.softplus(torch.randn(b, L, H, device="cuda", generator=g) - 3.0)
    A = -torch.exp(torch.rand(H, device="cuda", generator=g) * 2.7)
    B = torch.randn(b, L, G, N, device="cuda", generator=g).to(dtype)
    C = torch.randn(b, L, G, N, device="cuda", generator=g).to(dtype)
    return x, dt, A, B, C


def ours(x, dt, A, B, C, tuning=None):
    y, _ = ssd_chunked_triton(x, dt * A, B, C, CHUNK, return_final_state=False, dt=dt, tuning=tuning)
    return y


def peer(x, dt, A, B, C):
    return PEER(x, dt, A, B, C, chunk_size=CHUNK)


def reference(x, dt, A, B, C):
    y, _ = ssd_chunked(x.float() * dt[..., None], dt * A, B.float(), C.float(), CHUNK)
    return y


def rel_err(out, ref) -> float:
    if not torch.isfinite(out).all():
        return float("nan")
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def gradients(fn, args, dy):
    leaves = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in args]
    y = fn(*leaves)
    y.backward(dy)
    return y.detach(), [leaf.grad for leaf in leaves]


def check(fn, shape, dtype, seed):
    """Relative errors of y and of each gradient (x, dt, A, B, C) against the fp32 reference;
    NaN for all of them when the call fails (a failure is a result to report, not a crash)."""
    try:
        return _check(fn, shape, dtype, seed)
    except Exception as exc:  # noqa: BLE001
        print(f"check failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
        return [float("nan")] * 6


def _check(fn, shape, dtype, seed):
    args = inputs(*shape, dtype=dtype, seed=seed)
    dy = torch.randn(args[0].shape, device="cuda", generator=torch.Generator("cuda").manual_seed(seed + 1))
    y, grads = gradients(fn, args, dy.to(dtype))
    ref_args = [a.float() for a in args]
    y_ref, grads_ref = gradients(reference, ref_args, dy)
    return [rel_err(y, y_ref)] + [rel_err(g, r) for g, r in zip(grads, grads_ref)]


def bytes_and_flops(b, L, H, P, G, N, elem=2):
    """Fewest bytes a forward must move, and its FLOPs (the chunked algorithm, causal half counted)."""
    moved = b * L * (2 * H * P * elem + 2 * G * N * elem + H * 4)
    flops = 2 * b * L * (CHUNK * N * G + H * (CHUNK * P + 2 * P * N))
    return moved, flops


def mode_call(fn, args, mode: str):
    """(one call of `fn` in `mode`, the tensors do_bench sets grads to None on): "inference" (inputs need
    no gradient, so nothing is saved for a backward), "train_fwd" (the forward alone, saving what the
    backward reads) or "fwdbwd" (forward and backward)."""
    if mode == "inference":
        return (lambda: fn(*args)), None
    leaves = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in args]
    if mode == "train_fwd":
        return (lambda: fn(*leaves)), None
    dy = torch.randn_like(leaves[0])

    def step():
        fn(*leaves).backward(dy)
    return step, leaves


def time_pair(fn, args, mode: str):
    """do_bench median (ms) of one call of `fn` in `mode` (`mode_call`)."""
    call, leaves = mode_call(fn, args, mode)
    return do_bench(call, warmup=25, rep=200, grad_to_none=leaves, return_mode="median")


# Tilings --sweep tries at --sweep-length (4096) for each (P, N) of --sweep-sizes, as SSDTuning fields:
# the forward's alone (by the training forward's time), then, with --sweep-backward, the backward's under
# the fastest forward. Entries that coincide once capped at a shape's P and N run once.
FORWARD_TUNINGS = [
    dict(block_p=64, block_q=64, block_n=128, num_stages=2, fused=False),  # the split form's picks
    dict(block_p=128, block_q=32, block_n=128, num_stages=3, fused=False),
    dict(block_p=64, block_q=64, num_warps=4, num_stages=2, fused=True),  # the fused form's pick
    dict(block_p=64, block_q=32, num_warps=4, num_stages=2, fused=True),
    dict(block_p=32, block_q=64, num_warps=4, num_stages=2, fused=True),
    dict(block_p=64, block_q=64, num_warps=8, num_stages=2, fused=True),
    # C h^T in 64-entry pieces of the state (output_block_n), so 64-step output blocks fit at N = 256, P = 128;
    # the N = 256 picks (2026-11-28, cf4c461; 8 warps and 128-step output blocks were slower there)
    dict(block_p=128, block_q=64, block_n=128, num_stages=2, output_block_n=64, state_num_stages=3, fused=False),
    dict(block_p=64, block_q=64, block_n=128, num_stages=2, output_block_n=64, state_num_stages=3, fused=False),
    # 8 warps capped at 128 registers, so two programs share a multiprocessor (ptxas offline at cc4a62c: the
    # output kernel 116-126 registers, the fused walk at 32-step blocks 128, neither spilling); unmeasured
    dict(block_p=128, block_q=64, block_n=128, num_stages=2, output_block_n=64, state_num_stages=3, fused=False,
         num_warps=8, max_registers=128, state_num_warps=4),
    dict(block_p=64, block_q=32, num_warps=8, num_stages=2, max_registers=128, fused=True),
]
BACKWARD_TUNINGS = [
    dict(block_p=64, block_q=32, block_n=64, num_stages=3), dict(block_p=64, block_q=64, block_n=64, num_stages=2),
    dict(block_p=128, block_q=32, block_n=64, num_stages=3, block_s=64),
    dict(block_p=128, block_q=32, block_n=64, num_stages=3, block_s=64, split_diagonal=False),
    dict(block_p=64, block_q=64, block_n=64, num_stages=2, state_block_q=32, state_num_stages=3),
    dict(block_p=128, block_q=32, block_n=64, num_stages=3, block_s=64, output_block_n=64),  # N = 256 picks
    dict(block_p=64, block_q=32, block_n=64, num_stages=3, block_s=64, output_block_n=64),
    # the N = 256 pick on 8 warps, its state passing on 4: at 4 warps dC and dB there spill at 255 registers and
    # their 145 KB of shared memory leave one program a multiprocessor; at 8 warps none spills (ptxas offline,
    # at 1b0ced3); unmeasured
    dict(block_p=128, block_q=32, block_n=64, num_stages=3, block_s=64, output_block_n=64, num_warps=8,
         state_num_warps=4),
]


def tuning_of(forward: dict, backward: dict | None = None) -> SSDTuning:
    return SSDTuning(**forward, backward=None if backward is None else SSDTuning(**backward))


def over_default_backward(forward: dict, x: torch.Tensor, B: torch.Tensor, over_default: bool = False) -> SSDTuning:
    """The forward tiles `forward` (SSDTuning fields; with over_default, overrides of the default tuning for
    these inputs) with the default backward tiles for these inputs, whose fields a "backward" entry of
    `forward` overrides."""
    forward = dict(forward)
    backward_fields = forward.pop("backward", None) or {}
    defaults = default_tuning(x, B)
    tuning = dataclasses.replace(defaults, **forward) if over_default else tuning_of(forward)
    return dataclasses.replace(tuning, backward=dataclasses.replace(defaults.backward or defaults, **backward_fields))


def distinct(tunings, P, N):
    capped = {}
    for fields in tunings:
        fields = {**fields, "block_p": min(fields["block_p"], P), "block_q": min(fields["block_q"], CHUNK)}
        if "block_n" in fields:
            fields["block_n"] = min(fields["block_n"], N)
        capped.setdefault(tuple(sorted(fields.items())), fields)
    return list(capped.values())


def try_tuning(tuning, shape, a, results, backward: bool) -> float:
    """Check `tuning` on a small odd shape and time it at `shape`; its time, or inf when it fails."""
    row = {"shape": shape, "tuning": str(tuning)}
    try:
        errors = check(lambda *t: ours(*t, tuning=tuning), (2, 777, 4, shape[3], 1, shape[5]), torch.bfloat16, 3)
        row["max_rel_err"] = max(errors)
        row["fwd_ms"] = time_pair(lambda *t: ours(*t, tuning=tuning), a, "inference")
        row["train_fwd_ms"] = time_pair(lambda *t: ours(*t, tuning=tuning), a, "train_fwd")
        if backward:
            row["fwdbwd_ms"] = time_pair(lambda *t: ours(*t, tuning=tuning), a, "fwdbwd")
    except Exception as exc:  # noqa: BLE001  (a tile too large for shared memory is a result, not a crash)
        row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    results.setdefault("sweep", []).append(row)
    print("sweep", {k: v for k, v in row.items() if k != "tuning"}, tuning, flush=True)
    if not row.get("max_rel_err", float("nan")) < 2e-2:
        return float("inf")
    return row["fwdbwd_ms" if backward else "train_fwd_ms"]


def sweep(shape, results, sweep_backward: bool, forward_tunings=FORWARD_TUNINGS,
          backward_tunings=BACKWARD_TUNINGS) -> SSDTuning:
    """The fastest correct forward tiles, then (sweep_backward) the fastest correct backward tiles under
    them; otherwise the default backward tiles for these sizes."""
    a = inputs(*shape, dtype=torch.bfloat16, seed=0)
    P, N = shape[3], shape[5]
    forward = min(distinct(forward_tunings, P, N),
                  key=lambda f: try_tuning(tuning_of(f), shape, a, results, backward=False))
    if sweep_backward:
        backward = min(distinct(backward_tunings, P, N),
                       key=lambda b: try_tuning(tuning_of(forward, b), shape, a, results, backward=True))
        best = tuning_of(forward, backward)
    else:
        best = over_default_backward(forward, a[0], a[3])
    print(f"sweep picked for P={P} N={N}: {best}", flush=True)
    results.setdefault("picked", {})[f"P={P} N={N}"] = str(best)
    return best


def kernel_times(fn, args, calls: int = 3) -> dict[str, float]:
    """Mean device time (ms) of each kernel over `calls` forward+backward calls of `fn`, the largest first."""
    from torch.profiler import ProfilerActivity, profile

    forward_backward, leaves = mode_call(fn, args, "fwdbwd")

    def step():
        for leaf in leaves:  # no gradient accumulation kernels in the profile
            leaf.grad = None
        forward_backward()

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    times = collections.Counter()
    for event in prof.key_averages():
        times[event.key[:48]] += event.self_device_time_total / calls / 1000
    return {name: round(ms, 4) for name, ms in times.most_common() if ms > 0.001}


def profile(shape, tuning) -> None:
    """Each kernel's mean device time (ms, `kernel_times`) in a forward+backward of each implementation, a JSON
    line each."""
    a = inputs(*shape, dtype=torch.bfloat16, seed=0)
    for label, fn in (("composer", lambda *t: ours(*t, tuning=tuning)), ("mamba_ssm", peer)):
        print(f"profile {label} {shape} {json.dumps(kernel_times(fn, a))}", flush=True)


def time_shape(shape, a, tuned, results, repeats: int = 1, peer_retune: bool = False) -> None:
    """Time `tuned` (ours) and the peer at `shape` in each mode. With repeats > 1 the two alternate that
    many times per mode, so a slow spell of the shared machine falls on both, and the row keeps every
    sample beside their median. peer_retune: the peer's autotuners forget their picks before each of its
    samples, which tunes them again (outside the timing); the row adds the peer's fastest sample and the
    speed-up against it (`{mode}_speedup_vs_best`), the ratio least favourable to us."""
    start = time.perf_counter()
    tuned(*a)
    torch.cuda.synchronize()
    first_call = time.perf_counter() - start
    row = {"shape": shape, "first_call_s": first_call}
    for mode in ("inference", "train_fwd", "fwdbwd"):
        samples = {"composer": [], "mamba_ssm": []}
        for _ in range(repeats):
            for label, fn in (("composer", tuned), ("mamba_ssm", peer)):
                if label == "mamba_ssm" and peer_retune:
                    forget_autotuning()
                    mode_call(fn, a, mode)[0]()  # tunes the kernels this mode runs, untimed
                samples[label].append(time_pair(fn, a, mode))
        for label, times in samples.items():
            row[f"{label}_{mode}_ms"] = statistics.median(times)
            if repeats > 1:
                row[f"{label}_{mode}_samples_ms"] = times
        if peer_retune:
            row[f"mamba_ssm_{mode}_best_ms"] = min(samples["mamba_ssm"])
    moved, flops = bytes_and_flops(*shape)
    for mode in ("inference", "train_fwd", "fwdbwd"):
        row[f"{mode}_speedup"] = row[f"mamba_ssm_{mode}_ms"] / row[f"composer_{mode}_ms"]
        if peer_retune:
            row[f"{mode}_speedup_vs_best"] = row[f"mamba_ssm_{mode}_best_ms"] / row[f"composer_{mode}_ms"]
    row["composer_fwd_GBps"] = moved / row["composer_train_fwd_ms"] / 1e6
    row["composer_fwd_TFLOPs"] = flops / row["composer_train_fwd_ms"] / 1e9
    results["timings"].append(row)
    print(f"time {shape} inference {row['composer_inference_ms']:.3f} vs {row['mamba_ssm_inference_ms']:.3f} ms "
          f"(x{row['inference_speedup']:.2f}), training fwd {row['composer_train_fwd_ms']:.3f} vs "
          f"{row['mamba_ssm_train_fwd_ms']:.3f} (x{row['train_fwd_speedup']:.2f}), fwd+bwd "
          f"{row['composer_fwdbwd_ms']:.3f} vs {row['mamba_ssm_fwdbwd_ms']:.3f} ms (x{row['fwdbwd_speedup']:.2f}), "
          f"{row['composer_fwd_GBps']:.0f} GB/s of {COPY_BYTES_PER_S / 1e9:.0f}, "
          f"{row['composer_fwd_TFLOPs']:.0f} TFLOP/s of {MATMUL_FLOPS / 1e12:.0f}, "
          f"first call {first_call:.1f} s", flush=True)
    if peer_retune:
        print(f"time {shape} against mamba_ssm's fastest of {repeats} tunings: " + ", ".join(
            f"{mode} {row[f'mamba_ssm_{mode}_best_ms']:.3f} ms (x{row[f'{mode}_speedup_vs_best']:.2f})"
            for mode in ("inference", "train_fwd", "fwdbwd")), flush=True)


def compare_forms(results) -> None:
    """The fused and split forwards at the main shape's L, H, P, N over batch sizes: where the fused
    form's b * H programs stop filling the GPU (the auto rule's threshold)."""
    for b in (1, 2, 4, 8):
        shape = (b, 4096, 32, 64, 1, 128)
        a = inputs(*shape, dtype=torch.bfloat16, seed=0)
        row = {"shape": shape}
        for fused in (False, True):
            tuning = dataclasses.replace(default_tuning(a[0], a[3]), fused=fused)
            for mode in ("inference", "train_fwd"):
                row[f"{'fused' if fused else 'split'}_{mode}_ms"] = time_pair(
                    lambda *t: ours(*t, tuning=tuning), a, mode)
        results.setdefault("forms", []).append(row)
        print("forms", row, flush=True)


def fused_ours(x, dt, A, B, C):
    """Ours with the fused forward forced: the checks' small batches would otherwise take the split form."""
    return ours(x, dt, A, B, C, tuning=dataclasses.replace(default_tuning(x, B), fused=True))


def run_checks(results, with_peer: bool = True) -> None:
    """bf16 (both implementations; with_peer False: ours alone) and fp32 (ours) errors against the fp32
    reference at odd shapes."""
    names = ["y", "dx", "ddt", "dA", "dB", "dC"]
    implementations = [("composer", ours), ("composer_fused", fused_ours)]
    if with_peer:
        implementations.append(("mamba_ssm", peer))
    for shape in [(2, 1000, 8, 64, 1, 128), (1, 2048, 4, 128, 2, 64), (2, 513, 6, 64, 3, 256)]:
        for label, fn in implementations:
            errors = check(fn, shape, torch.bfloat16, seed=hash(shape) % 1000)
            results["checks"].append({"impl": label, "shape": shape, "dtype": "bf16", **dict(zip(names, errors))})
            ok = all(e == e and e < 2e-2 for e in errors)
            print(f"check {label:10s} {shape} bf16 " + " ".join(f"{n}={e:.1e}" for n, e in zip(names, errors))
                  + ("  OK" if ok else "  FAIL"), flush=True)
        errors = check(ours, shape, torch.float32, seed=7)
        results["checks"].append({"impl": "composer", "shape": shape, "dtype": "fp32", **dict(zip(names, errors))})
        print(f"check composer   {shape} fp32 " + " ".join(f"{n}={e:.1e}" for n, e in zip(names, errors)),
              flush=True)


def parse_shapes(text: str) -> list[tuple]:
    """Comma-separated shapes as (b, L, H, P, G, N), H = 32: 'LxPxN' at b=8 and one group, 'LxPxNxG' with G
    groups of B and C (a divisor of H), and either with '@b' for the batch: '4096x64x128,32768x64x128x8@2'."""
    shapes = []
    for item in filter(None, text.split(",")):
        sizes, _, batch = item.partition("@")
        L, P, N, *groups = map(int, sizes.split("x"))
        if len(groups) > 1 or 32 % (groups or [1])[0]:
            raise ValueError(f"shape {item!r}: expected LxPxN or LxPxNxG (G dividing H = 32), optionally @b")
        shapes.append((int(batch or 8), L, 32, P, (groups or [1])[0], N))
    return shapes


# The table's rows beside the main shape: b=8, one group, L 2048-8192; and (--groups-table) eight groups of B
# and C (four heads a group) at long lengths, the batch shrinking as L grows so each row holds 64Ki tokens.
TABLE = [(8, L, 32, P, 1, N) for L in (2048, 4096, 8192) for P in (64, 128) for N in (64, 128, 256)]
GROUPS_TABLE = [(b, L, 32, P, 8, N) for L, b in ((8192, 8), (16384, 4), (32768, 2)) for P in (64, 128)
                for N in (64, 128, 256)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one timing shape")
    parser.add_argument("--profile", action="store_true", help="each kernel's mean device time (ms) in a forward+backward at the main shape, ours and the peer's")
    parser.add_argument("--profile-shapes", help="per-kernel times at these shapes (as --shapes)")
    parser.add_argument("--sweep", action="store_true", help="try the tunings below at --sweep-length for each (P, N)"
                        " of --sweep-sizes first, then time every shape with the fastest found for its (P, N)")
    parser.add_argument("--sweep-sizes", default="64x128", help="comma-separated PxN, e.g. 64x128,128x128")
    parser.add_argument("--sweep-length", type=int, default=4096, help="L at which the sweep times each tiling")
    parser.add_argument("--sweep-backward", action="store_true", help="sweep the backward's tiles too")
    parser.add_argument("--forward-tunings", type=json.loads, default=FORWARD_TUNINGS,
                        help="the sweep's forward tilings as a JSON list of SSDTuning fields")
    parser.add_argument("--backward-tunings", type=json.loads, default=BACKWARD_TUNINGS,
                        help="the sweep's backward tilings as a JSON list of SSDTuning fields")
    parser.add_argument("--no-timings", action="store_true", help="skip the timing table (sweep or checks only)")
    parser.add_argument("--shapes", help="time only these comma-separated LxPxN (b=8, H=32, one group) or "
                        "LxPxNxG (G groups), each optionally @b (batch b), e.g. 2048x64x64,32768x64x128x8@2")
    parser.add_argument("--groups-table", action="store_true", help="time GROUPS_TABLE's rows (G=8, L 8192-32768) "
                        "after the table's; with --quick or --shapes, after those alone")
    parser.add_argument("--no-checks", action="store_true", help="time only (the checks run last)")
    parser.add_argument("--no-peer-checks", action="store_true", help="check ours alone: the peer's checks "
                        "autotune its kernels at each check shape, minutes of device time")
    parser.add_argument("--repeats", type=int, default=1, help="time ours and the peer alternately this many "
                        "times per shape and mode and report the medians (the peer's times swing between runs)")
    parser.add_argument("--peer-retune", action="store_true", help="tune the peer's autotuned kernels again "
                        "before each of its samples (use with --repeats) and report its fastest beside the median; about "
                        "110 s a shape on the H200 with --repeats 3, so pair it with --shapes")
    parser.add_argument("--forms", action="store_true", help="fused against split forward over batch sizes")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    out = Path(args.out)
    global PEER
    PEER = mamba_chunk_scan_combined()
    env = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "command": " ".join(sys.argv)}
    print(env, flush=True)

    results = {"env": env, "checks": [], "timings": []}
    main_shape = (8, 4096, 32, 64, 1, 128)
    picked = {}  # (P, N) -> the sweep's tuning; other shapes take the kernels' defaults for their types
    if args.sweep:
        for size in args.sweep_sizes.split(","):
            P, N = (int(v) for v in size.split("x"))
            picked[P, N] = sweep((8, args.sweep_length, 32, P, 1, N), results, args.sweep_backward,
                                 args.forward_tunings, args.backward_tunings)
    results["tuning"] = {f"P={P} N={N}": str(t) for (P, N), t in picked.items()} or "defaults"
    if args.profile:
        profile(main_shape, picked.get((64, 128)))
    for shape in parse_shapes(args.profile_shapes or ""):
        profile(shape, picked.get((shape[3], shape[5])))
    if args.forms:
        compare_forms(results)

    shapes = [] if args.no_timings else [main_shape]
    if args.shapes:
        shapes = parse_shapes(args.shapes)
    elif not args.quick and not args.no_timings:
        shapes += [shape for shape in TABLE if shape != main_shape]
    if args.groups_table:
        shapes += GROUPS_TABLE
    for shape in shapes:
        a = inputs(*shape, dtype=torch.bfloat16, seed=0)
        tuning = picked.get((shape[3], shape[5]))
        try:
            time_shape(shape, a, lambda *t: ours(*t, tuning=tuning), results, args.repeats, args.peer_retune)
        except Exception as exc:  # noqa: BLE001  (a shape that does not run is a result too)
            results["timings"].append({"shape": shape, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(f"time {shape} failed: {results['timings'][-1]['error']}", flush=True)
        del a
        torch.cuda.empty_cache()
        (out / "ssd_results.json").write_text(json.dumps(results, indent=2))  # each shape kept if cut off
    if not args.no_checks:
        run_checks(results, with_peer=not args.no_peer_checks)
        (out / "ssd_results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
