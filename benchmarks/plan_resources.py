"""Registers, spills and shared memory of every module a scan's plan lists (`plan.plan_modules`) on Hopper,
without a GPU: kernel_resources.py's compile for sm_90a, applied to the segmented walk's state passing and combine,
the segmented backward and the backward that forms the scores, which a call at b=8 does not render.

    python benchmarks/plan_resources.py [--P 64] [--N 128] [--groups 8] [--dtype bf16]

Each kernel prints one line: registers a thread, spill bytes, shared memory, the hottest loop's instructions.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # this script compiles (kernel_resources.py says why)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernel_resources as resources  # noqa: E402

from composer.codegen.render import render_kernel  # noqa: E402
from composer.kernels.semiseparable.chunk import HEADER, launch_options  # noqa: E402
from composer.kernels.semiseparable.plan import ScanSizes, plan_modules, plan_scan  # noqa: E402

# The segment kernels' run-time sizes, and their fp32 buffers (per-segment states, gradients and totals).
resources.SIZE_ARGUMENTS |= {"n_segments", "pieces"}
resources.FP32_POINTERS |= {"totals", "starting_grad", "arriving_grad", "leaving", "entering", "final_state",
                            "final_state_grad", "initial_state"}
FLAGS = ("FUSED", "SAVES_FOR_BACKWARD", "HAS_INITIAL_STATE", "LEAVING_STATE_ONLY", "SEGMENTED", "FORMS_SCORES")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--P", type=int, default=64)
    parser.add_argument("--N", type=int, default=128)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    args = parser.parse_args(argv)
    dtype = {"bf16": resources.torch.bfloat16, "fp16": resources.torch.float16, "fp32": resources.torch.float32}
    sizes = ScanSizes(args.P, args.N, 256, 32, args.groups, decays=True, has_dt=True, has_D=True)
    print(f"plan_modules of {sizes} on 132 multiprocessors, {args.dtype} operands", flush=True)
    for template, items in plan_modules(plan_scan(sizes, 132)):
        constants = dict(items)
        if constants["OPERAND"] != args.dtype:
            continue
        print(template, {flag: constants[flag] for flag in FLAGS if flag in constants}, flush=True)
        source = render_kernel(template, constants, HEADER)
        for name, (kernel, arguments, options) in resources.launched_kernels(source, constants).items():
            if name.startswith("segment"):  # launched with the state passing's options
                options = launch_options(constants, state_passing=True)
            r = resources.resources(kernel, arguments, dtype[args.dtype], options)
            print(f"  {name:24s} {r['registers']:3d} registers, spills {r['spill_stores']:4d} B stored / "
                  f"{r['spill_loads']:4d} B loaded, shared {r['shared'] // 1024:3d} KB, loop {r['loop']:4d} "
                  f"instructions ({options['num_warps']} warps)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
