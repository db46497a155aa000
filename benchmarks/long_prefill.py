"""Check and time the SSD scan at small batch and long length on one GPU: the plan's picks (the fused walk in
segments from one sequence up, its state passing in pieces, the backward's state passing in segments) against
the forms they replace, in one process.

    . benchmarks/device_setup.sh && python3 benchmarks/long_prefill.py [SHAPES] [--repeats 1] [--out DIR]

SHAPES as ssd.py's --shapes (--split-shapes: rule and split alone). First bf16 errors of y and every gradient against the fp32 reference at shapes that
take each new path (NaN never passes), then each option's do_bench median per mode, the options alternating
`repeats` times (after one untimed call each), then the plan's per-kernel times of one training forward and one forward+backward. Options
(tunings over the measured default for the shape, `default_tuning`):
  rule       the plan as committed: no tuning
  split      the split forward and the whole backward state passing: the plan before this change at b=1
  pieces=2, pieces=4   the segments' state passing in that many pieces a segment (the rule: 1 where the walk's
             segments fill the multiprocessors, as at these lengths)
  bwd_whole  the backward's state passing over the whole sequence (the rule segments it at b*H*tiles <= SMs/2)
  bwd_segments=4   the backward's state passing in that many segments, whatever the rule picks
  segments=8 the walk in 8 segments (the rule: 4 at b=2, 8 at b=1, H=32, P=64)
mamba_ssm's times at these shapes come from ssd.py in the same call (results/ beside the log).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssd  # noqa: E402

from composer.kernels.semiseparable.chunk import call_launch, default_tuning  # noqa: E402

SHAPES = "32768x64x128x8@2,32768x64x128x8@1,131072x64x128x1@1,8192x64x128x8@1"
# b, L, H, P, G, N: b=1 segmented everywhere (walk 8 segments, backward 4 at 32k, 8 at 128k; at 4096 steps the
# walk's 4 segments in 2 pieces each); b=2 with a whole backward; P=128 at G=4; a length no segment count divides
# (the whole walk at b=1)
CHECKS = [(1, 8192, 32, 64, 8, 128), (1, 4096, 32, 64, 8, 128), (2, 4096, 32, 64, 1, 128), (1, 4096, 32, 128, 4, 64),
          (1, 3000, 32, 64, 8, 128)]
NAMES = ["y", "dx", "ddt", "dA", "dB", "dC"]


def option_tuning(option: str, x, B):
    if option == "rule":
        return None
    default = default_tuning(x, B)
    backward = default.backward or default
    if option == "split":
        return dataclasses.replace(default, fused=False, backward=dataclasses.replace(backward, segments=1))
    if option.startswith("pieces="):
        return dataclasses.replace(default, state_pieces=int(option.split("=")[1]))
    if option.startswith("segments="):
        return dataclasses.replace(default, segments=int(option.split("=")[1]))
    if option == "bwd_whole":
        return dataclasses.replace(default, backward=dataclasses.replace(backward, segments=1))
    if option.startswith("bwd_segments="):
        return dataclasses.replace(default, backward=dataclasses.replace(backward, segments=int(option.split("=")[1])))
    raise ValueError(option)


def option_fn(option: str):
    def call(x, dt, A, B, C):
        return ssd.ours(x, dt, A, B, C, tuning=option_tuning(option, x, B))
    return call


def picks(shape) -> str:
    b, L, H, P, G, N = shape
    x = torch.empty(b, L, H, P, device="cuda", dtype=torch.bfloat16)
    B = torch.empty(b, L, G, N, device="cuda", dtype=torch.bfloat16)
    launch, backward = call_launch(x, True, B, ssd.CHUNK, False, False, None, has_dt=True)
    return (f"fused={launch.constants['FUSED']} segments={launch.segments} pieces={launch.state_pieces} "
            f"backward_segments={backward.segments}")


def kernel_times(fn, args, mode: str, calls: int = 3) -> dict:
    """Mean device time (ms) of each kernel over `calls` calls in `mode`."""
    from torch.profiler import ProfilerActivity, profile

    step, leaves = ssd.mode_call(fn, args, mode)

    def once():
        for leaf in leaves or ():
            leaf.grad = None
        step()
    once()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            once()
        torch.cuda.synchronize()
    times = collections.Counter()
    for event in prof.key_averages():
        times[event.key[:48]] += event.self_device_time_total / calls / 1000
    return {name: round(ms, 4) for name, ms in times.most_common() if ms > 0.001}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shapes", nargs="?", default=SHAPES)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--options", default="rule,split,pieces=2,pieces=4,bwd_whole,segments=8")
    parser.add_argument("--split-shapes", default="32768x128x128x8@1", help="shapes timed under rule and split alone")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    print({"device": torch.cuda.get_device_name(), "command": " ".join(sys.argv)}, flush=True)
    failures = 0
    for shape in CHECKS:
        for option in ("rule", "split"):
            errors = ssd.check(option_fn(option), shape, torch.bfloat16, seed=sum(shape) % 997)
            ok = all(e == e and e < 2e-2 for e in errors)
            failures += not ok
            print(f"check {option:5s} {shape} {picks(shape) if option == 'rule' else ''} "
                  + " ".join(f"{n}={e:.1e}" for n, e in zip(NAMES, errors)) + ("  OK" if ok else "  FAIL"), flush=True)
    for shape in CHECKS[:1] + CHECKS[-1:]:  # inference (no saved tensors: the state passing forms its own cum)
        args_ = ssd.inputs(*shape, dtype=torch.bfloat16, seed=5)
        with torch.no_grad():
            error = ssd.rel_err(option_fn("rule")(*args_), ssd.reference(*[t.float() for t in args_]))
        failures += not error < 2e-2
        print(f"check inference {shape} y={error:.1e}" + ("  OK" if error < 2e-2 else "  FAIL"), flush=True)
    options = args.options.split(",")
    rows = []
    timed = [(shape, options) for shape in ssd.parse_shapes(args.shapes)]
    timed += [(shape, ["rule", "split"]) for shape in ssd.parse_shapes(args.split_shapes)]
    for shape, options in timed:
        a = ssd.inputs(*shape, dtype=torch.bfloat16, seed=0)
        row = {"shape": shape, "picks": picks(shape)}
        fns = {option: option_fn(option) for option in options}
        for mode in ("inference", "train_fwd", "fwdbwd"):
            samples = collections.defaultdict(list)
            for fn in fns.values():  # compile outside the samples
                ssd.mode_call(fn, a, mode)[0]()
            torch.cuda.synchronize()
            for _ in range(args.repeats):
                for option, fn in fns.items():
                    samples[option].append(ssd.time_pair(fn, a, mode))
            for option, times in samples.items():
                row[f"{option}_{mode}_ms"] = round(statistics.median(times), 4)
            print(f"time {shape} {mode}: " + ", ".join(f"{option} {row[f'{option}_{mode}_ms']:.3f}"
                                                      for option in options), flush=True)
        for mode in ("train_fwd", "fwdbwd"):
            row[f"rule_{mode}_kernels"] = kernel_times(fns["rule"], a, mode)
            print(json.dumps({"shape": shape, "picks": row["picks"], f"{mode}_kernels": row[f"rule_{mode}_kernels"]}),
                  flush=True)
        rows.append(row)
        del a
        torch.cuda.empty_cache()
        (Path(args.out) / "long_prefill.json").write_text(json.dumps(rows, indent=1))
    print(f"checks failed: {failures}", flush=True)


if __name__ == "__main__":
    main()
