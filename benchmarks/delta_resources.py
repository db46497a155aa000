"""Registers, spills and shared memory of the rendered delta-rule kernels on Hopper, without a GPU.

    python benchmarks/delta_resources.py --K 128 --V 128 [--chunk 64] [--dtype bf16|fp32]

Renders the training forward, the backward (from an initial state) and the decoding step as the plan gives them for
32 value heads on 16 key heads, compiles each kernel for sm_90a with the Triton wheel's own ptxas, and
prints ptxas's register and spill report and Triton's shared memory per kernel. An H200 gives a program
at most 227 KB of shared memory; a kernel past that does not launch.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # this compiles: it runs in its own process

sys.path.insert(0, str(Path(__file__).resolve().parent))  # kernel_resources.py beside this script
from kernel_resources import jit_functions, sm90_report  # noqa: E402

from composer.codegen.render import render_kernel  # noqa: E402
from composer.kernels.delta.plan import (BACKWARD_TEMPLATE, FORWARD_TEMPLATE, STEP_TEMPLATE, DeltaSizes,  # noqa: E402
                                         plan_delta)

INPUTS = {"q", "k", "v", "beta", "log_gate", "y", "dy"}  # pointers in the inputs' dtype; the rest are fp32
SIZES = {"seq_len", "n_heads"}


def kernels(source: str) -> dict:
    return {name: value for name, value in jit_functions(source).items() if name.startswith("delta_")}


def resources(kernel, dtype: str, num_warps: int, num_stages: int) -> dict:
    arguments = list(inspect.signature(kernel.fn).parameters)
    signature = {a: "i32" if a in SIZES else "fp32" if a == "scale" else
                 f"*{dtype}" if a.removesuffix("_ptr") in INPUTS else "*fp32" for a in arguments}
    return sm90_report(kernel, signature, [a for a in arguments if a.endswith("_ptr")],
                       dict(num_warps=num_warps, num_stages=num_stages))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--K", type=int, default=128, help="key head dim")
    parser.add_argument("--V", type=int, default=128, help="value head dim")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args(argv)
    plan = plan_delta(DeltaSizes(args.K, args.V, args.chunk, 32, 16, gate=True))
    header = {"spec": "delta_resources"}
    sources = ((render_kernel(FORWARD_TEMPLATE, plan.forward_constants(args.dtype, True), header),
                {"delta_solve_fwd": plan.prepare_warps, "delta_wu_fwd": plan.prepare_warps,
                 "delta_state_fwd": plan.state_warps, "delta_output_fwd": plan.output_warps}),
               (render_kernel(BACKWARD_TEMPLATE, plan.backward_constants(args.dtype, True), header),
                {"delta_state_bwd": plan.backward_warps, "delta_chunk_bwd": plan.backward_warps}),
               (render_kernel(STEP_TEMPLATE, plan.step_constants(), header), {"delta_step": 4}))  # Triton's default
    print(f"K={args.K} V={args.V} chunk={args.chunk} {args.dtype}, sm_90a")
    for source, warps in sources:
        for name, kernel in kernels(source).items():
            # the walks' stages as chunk.py launches them; the others at Triton's default
            stages = {"delta_state_fwd": plan.forward_stages, "delta_state_bwd": plan.state_stages}.get(name, 3)
            r = resources(kernel, args.dtype, warps[name], stages)
            print(f"  {name:18s} {r['registers']:3d} registers, spills {r['spill_stores']:5d} B stored / "
                  f"{r['spill_loads']:5d} B loaded, shared {r['shared'] // 1024:3d} KB, {warps[name]} warps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
