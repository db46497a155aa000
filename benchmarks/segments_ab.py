"""A/B of the segmented fused walk's training-forward options in one process, against mamba_ssm: the segments'
state passing storing every chunk's state to scratch or only the leaving state (LEAVING_STATE_ONLY), and the
forward's cumsum and scores on a side stream beside the walk or before it (SIDE_STREAM_SCORES).

    . benchmarks/device_setup.sh && python3 benchmarks/segments_ab.py [SHAPES] [--repeats 2]

SHAPES as ssd.py's --shapes. Each option's plan is the default plan with those two flags set or cleared on its
segmented variants; bf16 errors against the fp32 reference first, then each mode's do_bench median, the options
and the peer alternating `repeats` times, then each option's per-kernel times of one training forward.
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

from composer.kernels.semiseparable.chunk import plan_for_call, ssd_chunked_triton  # noqa: E402
from composer.kernels.semiseparable.plan import ScanPlan  # noqa: E402

OPTIONS = {"scratch": (False, False), "leaving_only": (True, False), "leaving_only+side_stream": (True, True)}
SHAPES = "32768x64x128x8@2,32768x64x64x8@2,32768x64x256x8@2,32768x128x128x8@2"


def _flag(constants: dict, name: str, on: bool) -> dict:
    return dict(constants, **{name: True}) if on else {k: v for k, v in constants.items() if k != name}


def plan_with(plan: ScanPlan, leaving_only: bool, side_stream: bool) -> ScanPlan:
    """`plan` with its segmented variants' two flags set as given (the side stream only where scores are saved)."""
    variants = {}
    for key, options in plan.variants.items():
        variants[key] = tuple(
            dataclasses.replace(v, segment_state=_flag(v.segment_state, "LEAVING_STATE_ONLY", leaving_only),
                                segmented=_flag(v.segmented, "SIDE_STREAM_SCORES",
                                                side_stream and v.segmented["SAVES_FOR_BACKWARD"]))
            if v.segment_state is not None else v for v in options)
    return ScanPlan(plan.sizes, variants)


_PLANS: dict = {}


def option_fn(option: str):
    def call(x, dt, A, B, C):
        key = (x.shape, B.shape, option)
        if key not in _PLANS:
            log_a = dt * A
            _PLANS[key] = plan_with(plan_for_call(x, log_a, B, ssd.CHUNK, False, False, has_dt=True),
                                    *OPTIONS[option])
        y, _ = ssd_chunked_triton(x, dt * A, B, C, ssd.CHUNK, return_final_state=False, dt=dt, plan=_PLANS[key])
        return y
    return call


def forward_kernel_times(fn, args, calls: int = 3) -> dict:
    """Mean device time (ms) of each kernel over `calls` training forwards."""
    from torch.profiler import ProfilerActivity, profile

    forward, _ = ssd.mode_call(fn, args, "train_fwd")
    forward()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            forward()
        torch.cuda.synchronize()
    times = collections.Counter()
    for event in prof.key_averages():
        times[event.key[:48]] += event.self_device_time_total / calls / 1000
    return {name: round(ms, 4) for name, ms in times.most_common() if ms > 0.001}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shapes", nargs="?", default=SHAPES)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    ssd.PEER = ssd.mamba_chunk_scan_combined()
    names = ["y", "dx", "ddt", "dA", "dB", "dC"]
    for shape in [(2, 4096, 32, 64, 8, 128), (1, 8192, 32, 128, 8, 64)]:
        for option in OPTIONS:
            errors = ssd.check(option_fn(option), shape, torch.bfloat16, seed=sum(shape) % 997)
            ok = all(e == e and e < 2e-2 for e in errors)
            print(f"check {option} {shape} " + " ".join(f"{n}={e:.1e}" for n, e in zip(names, errors))
                  + ("  OK" if ok else "  FAIL"), flush=True)
    fns = {option: option_fn(option) for option in OPTIONS}
    fns["mamba_ssm"] = ssd.peer
    for shape in ssd.parse_shapes(args.shapes):
        a = ssd.inputs(*shape, dtype=torch.bfloat16, seed=0)
        row = {"shape": shape}
        for mode in ("inference", "train_fwd", "fwdbwd"):
            samples = collections.defaultdict(list)
            for fn in fns.values():
                ssd.time_pair(fn, a, mode)  # compile and autotune outside the samples
            for _ in range(args.repeats):
                for label, fn in fns.items():
                    samples[label].append(ssd.time_pair(fn, a, mode))
            for label, times in samples.items():
                row[f"{label}_{mode}_ms"] = round(statistics.median(times), 4)
                row[f"{label}_{mode}_samples"] = [round(t, 4) for t in times]
            print(f"time {shape} {mode}: " + ", ".join(
                f"{label} {row[f'{label}_{mode}_ms']:.3f}"
                + ("" if label == "mamba_ssm" else f" (x{row[f'mamba_ssm_{mode}_ms'] / row[f'{label}_{mode}_ms']:.2f})")
                for label in fns), flush=True)
        for option in OPTIONS:
            print(json.dumps({"shape": shape, "option": option, "train_fwd_kernels": forward_kernel_times(
                fns[option], a)}), flush=True)
        print(json.dumps(row), flush=True)
        del a
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
