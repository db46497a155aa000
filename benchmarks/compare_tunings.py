"""Time composer's SSD kernels under several tunings at a few shapes, on one GPU.

    python benchmarks/compare_tunings.py LABEL SHAPES [TUNINGS] [--over-default] [--modes train_fwd,inference]
        [--kernels]

SHAPES: comma-separated LxPxN at b=8, H=32, one group, or LxPxNxG[@b] (as ssd.py's --shapes). TUNINGS: a JSON list of
SSDTuning fields, `null` for the default tuning of the call (which may differ between training and
inference); default `[null]`. Each candidate's fields make a fresh SSDTuning over the shape's default
backward; with --over-default they override the shape's default tuning instead. A "backward" entry
({"dx_block_q": 64, ...}) overrides fields of that default backward. --modes: which of train_fwd (the
forward saving for the backward), inference and fwdbwd to time (do_bench medians, ms). --kernels: each
kernel's mean device time (ms) over three forward+backward calls, from torch.profiler.
Prints one line per (shape, tuning), then a RESULT line with all of them as JSON. A quicker question than
ssd.py's --sweep: no checks, no peer, and the default tuning among the candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssd  # noqa: E402

MODES = ("train_fwd", "inference", "fwdbwd")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("label")
    parser.add_argument("shapes", type=ssd.parse_shapes)
    parser.add_argument("tunings", nargs="?", type=json.loads, default=[None])
    parser.add_argument("--over-default", action="store_true", help="fields override the shape's default tuning")
    parser.add_argument("--modes", default="train_fwd,inference", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--kernels", action="store_true", help="per-kernel device times of forward+backward")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}; got {args.modes}")
    results = {}
    for shape in args.shapes:
        inputs = ssd.inputs(*shape, dtype=torch.bfloat16, seed=0)
        for fields in args.tunings:
            if fields is None:  # the call's own default, picked inside ssd_chunked_triton
                run = ssd.ours
            else:
                tuning = ssd.over_default_backward(fields, inputs[0], inputs[3], args.over_default)
                run = lambda *t, tuning=tuning: ssd.ours(*t, tuning=tuning)  # noqa: E731
            ssd.time_pair(run, inputs, modes[0])  # compile and warm up first
            times = {mode: round(ssd.time_pair(run, inputs, mode), 4) for mode in modes}
            if args.kernels:
                times["kernels_ms"] = ssd.kernel_times(run, inputs)
            key = f"{shape} {'default' if fields is None else json.dumps(fields, sort_keys=True)}"
            results[key] = times
            print(args.label, key, json.dumps(times), flush=True)
    print("RESULT", args.label, json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
