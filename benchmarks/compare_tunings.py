"""Time composer's SSD forward under several tunings at a few shapes, training and inference, on one GPU.

    python benchmarks/compare_tunings.py LABEL SHAPES [TUNINGS]

SHAPES: comma-separated LxPxN at b=8, H=32, one group (as ssd.py's --shapes). TUNINGS: a JSON list of
SSDTuning fields, `null` for the default tuning of the call (which may differ between training and
inference); default `[null]`. Each tuning takes the default backward of its shape. Prints one line per
(shape, tuning) with do_bench medians in ms of the training forward (saving for the backward) and the
inference forward, then a RESULT line with all of them as JSON. A quicker question than ssd.py's --sweep:
no checks, no peer, and the default tuning among the candidates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssd  # noqa: E402


def forward_of(fields: dict | None, x: torch.Tensor, B: torch.Tensor):
    """ours() under `fields` over the default backward of these inputs, or under the default tuning."""
    if fields is None:
        return ssd.ours
    tuning = ssd.over_default_backward(fields, x, B)
    return lambda *args: ssd.ours(*args, tuning=tuning)


def main(argv: list[str]) -> int:
    label, shapes = argv[0], ssd.parse_shapes(argv[1])
    candidates = json.loads(argv[2]) if len(argv) > 2 else [None]
    results = {}
    for shape in shapes:
        args = ssd.inputs(*shape, dtype=torch.bfloat16, seed=0)
        for fields in candidates:
            forward = forward_of(fields, args[0], args[3])
            ssd.time_pair(forward, args, "train_fwd")  # compile and warm both paths first
            times = {mode: round(ssd.time_pair(forward, args, mode), 4) for mode in ("train_fwd", "inference")}
            key = f"{shape} {'default' if fields is None else json.dumps(fields, sort_keys=True)}"
            results[key] = times
            print(label, key, times, flush=True)
    print("RESULT", label, json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
