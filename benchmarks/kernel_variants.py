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
import traceback
from pathlib import Path
R = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(R / "benchmarks"))

DELTA = [  # shape (b, L, H, Hk, K, V), gate, dtype, BV, stages (None: the plan's)
    ((1, 777, 32, 16, 128, 128), False, "bfloat16", None, None),
    ((1, 777, 32, 16, 64, 64), False, "bfloat16", None, None),
    ((2, 333, 4, 2, 64, 64), False, "float32", None, None),
]
GLA = []



def delta_case(i):
    import delta
    import torch
    from composer.kernels.delta.chunk import plan_for
    shape, gate, dtype, bv, stages = DELTA[i]
    x0 = delta.inputs(*shape, gate=gate, seed=1, dtype=getattr(torch, dtype))
    plan = plan_for(x0["q"], x0["v"], x0["log_gate"], delta.CHUNK)
    plan = dataclasses.replace(plan, shared=tuple(sorted({**dict(plan.shared), "BV": bv or dict(plan.shared)["BV"]}.items())),
                               state_stages=stages or plan.state_stages)
    from composer.kernels.delta.chunk import delta_rule_chunked_triton
    fn = lambda x, initial=True, final=True: delta_rule_chunked_triton(
        x["q"], x["k"], x["v"], x["beta"], x["log_gate"], delta.CHUNK, initial_state=x["state0"], plan=plan)
    return delta.check("composer", fn, shape, gate, getattr(torch, dtype), 0)


def gla_case(i):
    import gla
    import torch
    from composer.kernels.gla.plan import GLASizes, plan_gla
    shape, strength, dtype, stages, bv = GLA[i]
    b, L, H, K, V = shape
    plan = plan_gla(GLASizes(K, V, gla.CHUNK, H))
    plan = dataclasses.replace(plan, stages=stages, shared=tuple(sorted({**dict(plan.shared), "BV": min(bv, V)}.items())))
    row = gla.check("composer", lambda x, initial=True: gla.ours(x, initial, plan), shape, strength,
                    getattr(torch, dtype), 3, "cuda")
    return {n: round(e["norm"], 5) for n, e in row["errors"].items()} | {"verdict": row["verdict"]}


if __name__ == "__main__":
    from peers import print_row, run_isolated
    if len(sys.argv) == 3:
        kind, i = sys.argv[1], int(sys.argv[2])
        try:
            out = (delta_case if kind == "delta" else gla_case)(i)
        except Exception as exc:  # noqa: BLE001  (a failing case is a result)
            frames = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
            out = {"error": f"{type(exc).__name__}: {str(exc)[:200]}", "where": frames[-3:]}
        print_row(out)
        sys.exit(0)
    for kind, cases in (("delta", DELTA), ("gla", GLA)):
        for i, case in enumerate(cases):
            start = time.time()
            row = run_isolated([__file__, kind, str(i)], 90)
            print(kind, case, f"{time.time() - start:.0f}s", json.dumps(row), flush=True)
