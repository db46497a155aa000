"""Check and time the segmented fused walk on one GPU: bf16 errors of y and every gradient against the fp32
reference with the segments the rule picks and with one, then each mode's time at long, small-batch shapes.

    python benchmarks/segments_check.py [SHAPES]     (SHAPES as ssd.py's --shapes)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssd  # noqa: E402

from composer.kernels.semiseparable.chunk import call_launch, default_tuning  # noqa: E402
from composer.kernels.semiseparable.tuning import SSDTuning  # noqa: E402

CHECKS = [(2, 4096, 32, 64, 8, 128), (1, 8192, 32, 128, 8, 64), (2, 2048, 32, 64, 1, 128)]
TIMED = "32768x64x128x8@2,32768x64x128@2,32768x128x64x8@2,16384x64x128x8@4,4096x64x128x8@2"


def picked_segments(shape) -> int:
    """The segments the default tuning's rule gives a training forward at `shape` (b, L, H, P, G, N)."""
    b, L, H, P, G, N = shape
    x = torch.empty(b, L, H, P, device="cuda", dtype=torch.bfloat16)
    B = torch.empty(b, L, G, N, device="cuda", dtype=torch.bfloat16)
    launch, _ = call_launch(x, None, B, ssd.CHUNK, False, False, default_tuning(x, B), has_dt=True)
    return launch.segments


def one(x, B) -> SSDTuning:
    """The default tuning for these inputs with the walk over the whole sequence."""
    return dataclasses.replace(default_tuning(x, B), segments=1)


def main(shapes: str) -> None:
    for shape in CHECKS:
        for label, tuning in (("picked", None), ("one", "one")):
            fn = (lambda *t: ssd.ours(*t, tuning=one(t[0], t[3]))) if tuning else ssd.ours
            errors = ssd.check(fn, shape, torch.bfloat16, seed=sum(shape) % 997)
            print(f"check {label} segments={picked_segments(shape) if label == 'picked' else 1} {shape} "
                  + " ".join(f"{n}={e:.1e}" for n, e in zip(["y", "dx", "ddt", "dA", "dB", "dC"], errors))
                  + ("  OK" if all(e == e and e < 2e-2 for e in errors) else "  FAIL"), flush=True)
    for shape in ssd.parse_shapes(shapes):
        a = ssd.inputs(*shape, dtype=torch.bfloat16, seed=0)
        row = {}
        for label in ("picked", "one"):
            fn = ssd.ours if label == "picked" else (lambda *t: ssd.ours(*t, tuning=one(t[0], t[3])))
            ssd.time_pair(fn, a, "inference")
            row[label] = [round(ssd.time_pair(fn, a, mode), 3) for mode in ("inference", "train_fwd", "fwdbwd")]
        print(f"time {shape} segments={picked_segments(shape)} inference/train_fwd/fwdbwd ms: picked {row['picked']}"
              f" one {row['one']}", flush=True)
        del a
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else TIMED)
