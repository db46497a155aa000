"""Time the SSD scan of whichever composer is importable, over the table's shapes, for an A/B of two commits.

Each version is installed to its own folder and this script runs once per version and repeat, alternating,
so both see the same GPU state (METHOD.md); `--compare` then prints each shape's median times and the ratio.
It uses only `ssd_chunked_triton(x, dt * A, B, C, chunk, dt=dt)`, which every version has.

    python3 benchmarks/ab_versions.py --label new --out results.jsonl          # once per version and repeat
    python3 benchmarks/ab_versions.py --compare results.jsonl --base old --new new
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

# (b, L, H, P, G, N): the b=8, H=32 table at L 2048-8192, and groups = 8 at long lengths and small batches.
TABLE = [(8, L, 32, P, 1, N) for L in (2048, 4096, 8192) for P in (64, 128) for N in (64, 128, 256)]
GROUPS = [(b, L, 32, P, 8, N) for b, L in ((8, 8192), (4, 16384), (2, 32768)) for P, N in ((64, 128), (128, 64))]
CHUNK = 256
MODES = ("inference", "train_fwd", "fwdbwd")


def time_shape(shape, mode):
    import torch
    import triton.testing

    from composer.kernels.semiseparable.chunk import ssd_chunked_triton

    b, L, H, P, G, N = shape
    torch.manual_seed(0)
    grad = mode != "inference"
    x = torch.randn(b, L, H, P, device="cuda", dtype=torch.bfloat16, requires_grad=grad)
    B = (torch.randn(b, L, G, N, device="cuda") * N ** -0.5).to(torch.bfloat16).requires_grad_(grad)
    C = (torch.randn(b, L, G, N, device="cuda") * N ** -0.5).to(torch.bfloat16).requires_grad_(grad)
    dt = (torch.rand(b, L, H, device="cuda") * 0.1 + 0.01).requires_grad_(grad)
    A = -torch.rand(H, device="cuda") - 0.5

    def forward():
        return ssd_chunked_triton(x, dt * A, B, C, CHUNK, return_final_state=False, dt=dt)[0]
    if mode == "inference":
        def step():
            with torch.no_grad():
                forward()
    elif mode == "train_fwd":
        step = forward
    else:
        dy = torch.randn(b, L, H, P, device="cuda", dtype=torch.bfloat16)

        def step():
            forward().backward(dy)
    return triton.testing.do_bench(step, return_mode="median")


def measure(label: str, out: str, length: int | None = None) -> None:
    with open(out, "a") as sink:
        for shape in [s for s in TABLE + GROUPS if length is None or s[1] == length]:
            for mode in MODES:
                ms = time_shape(shape, mode)
                sink.write(json.dumps({"label": label, "shape": shape, "mode": mode, "ms": ms}) + "\n")
                sink.flush()  # a run cut short keeps what it measured
                print(label, shape, mode, f"{ms:.4f}", flush=True)


def compare(path: str, base: str, new: str) -> None:
    times: dict = {}
    for line in open(path):
        row = json.loads(line)
        times.setdefault((tuple(row["shape"]), row["mode"]), {}).setdefault(row["label"], []).append(row["ms"])
    print(f"{'b L H P G N':28s} {'mode':10s} {base:>9s} {new:>9s}  {new}/{base}")
    for (shape, mode), by_label in times.items():
        if base in by_label and new in by_label:
            old_ms, new_ms = statistics.median(by_label[base]), statistics.median(by_label[new])
            print(f"{' '.join(map(str, shape)):28s} {mode:10s} {old_ms:9.4f} {new_ms:9.4f}  {new_ms / old_ms:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label")
    parser.add_argument("--out")
    parser.add_argument("--length", type=int, help="only the shapes of this length")
    parser.add_argument("--compare")
    parser.add_argument("--base", default="base")
    parser.add_argument("--new", default="new")
    args = parser.parse_args(argv)
    if args.compare:
        compare(args.compare, args.base, args.new)
    else:
        measure(args.label, args.out, args.length)
    return 0


if __name__ == "__main__":
    sys.exit(main())
