"""Which constants make the delta and GLA kernels pass on a GPU: each case, the plan's constants with BV and the
stage count replaced, in its own process (CUDA_LAUNCH_BLOCKING=1: an illegal memory access spoils the CUDA context
for every later call, and a blocking launch names the kernel that made it), against the fp32 reference.

    . benchmarks/device_setup.sh && python3 benchmarks/kernel_variants.py

Each output line names its case; edit DELTA and GLA for the question at hand (the results logs record the cases
each run had: results/delta_h200_2026-12-02_3ca6105_variants.log, results/gla_h200_2026-12-02_3ca6105_variants.log).
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # delta.py, gla.py and peers.py beside this script

DELTA = [  # shape (b, L, H, Hk, K, V), gate, dtype, BV, stages (None: the plan's)
    ((1, 777, 32, 16, 128, 128), False, "bfloat16", None, None),
    ((1, 777, 32, 16, 64, 64), False, "bfloat16", None, None),
    ((2, 333, 4, 2, 64, 64), False, "float32", None, None),
]
GLA = []  # shape (b, L, H, K, V), strength, dtype, forward stages, BV


def with_constants(plan, shared: dict, **fields):
    """`plan` with some of its shared constants and launch fields replaced."""
    return dataclasses.replace(plan, shared=tuple(sorted({**dict(plan.shared), **shared}.items())), **fields)


def delta_case(i):
    import delta
    import torch
    from composer.kernels.delta.chunk import plan_for
    shape, gate, dtype, bv, stages = DELTA[i]
    x = delta.inputs(*shape, gate=gate, seed=1, dtype=getattr(torch, dtype))
    plan = plan_for(x["q"], x["v"], x["log_gate"], delta.CHUNK)
    plan = with_constants(plan, {"BV": bv or dict(plan.shared)["BV"]}, state_stages=stages or plan.state_stages)
    return delta.check("composer", lambda x: delta.ours(x, plan=plan), shape, gate, getattr(torch, dtype), 0)


def gla_case(i):
    import gla
    import torch
    from composer.kernels.gla.plan import GLASizes, plan_gla
    shape, strength, dtype, stages, bv = GLA[i]
    b, L, H, K, V = shape
    plan = with_constants(plan_gla(GLASizes(K, V, gla.CHUNK, H)), {"BV": min(bv, V)}, stages=stages)
    row = gla.check("composer", lambda x, initial=True: gla.ours(x, initial, plan), shape, strength,
                    getattr(torch, dtype), 3, "cuda")
    return {n: round(e["norm"], 5) for n, e in row["errors"].items()} | {"verdict": row["verdict"]}


if __name__ == "__main__":
    from peers import failure, print_row, run_isolated
    if len(sys.argv) == 3:
        kind, i = sys.argv[1], int(sys.argv[2])
        try:
            out = (delta_case if kind == "delta" else gla_case)(i)
        except Exception as exc:  # noqa: BLE001  (a failing case is a result)
            out = failure(exc)
        print_row(out)
        sys.exit(0)
    for kind, cases in (("delta", DELTA), ("gla", GLA)):
        for i, case in enumerate(cases):
            start = time.time()
            row = run_isolated([__file__, kind, str(i)], 90)
            print(kind, case, f"{time.time() - start:.0f}s", json.dumps(row), flush=True)
