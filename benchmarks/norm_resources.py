"""Registers, spills and shared memory of the gated RMSNorm's kernels and of the Mamba-2 decoding step's on
Hopper, without a GPU: each kernel as the plan renders and launches it, compiled for sm_90a with the Triton wheel's
own ptxas (kernel_resources.py).

    python benchmarks/norm_resources.py [--widths 64,256,1536,4096] [--decode] [--dtype bf16|fp32]

--widths: the norm's row widths (d_inner); --decode: the three-kernel decoding step at Mamba-2 130M's sizes
(d_model 768, 24 heads of 64, state 128), at batch 1 and 64. A spill is local-memory traffic each row pays.
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
from composer.kernels.norms.plan import TEMPLATE, norm_constants  # noqa: E402
from composer.kernels.semiseparable.decode_plan import DECODE_TEMPLATE, decode_constants, gemm_tiles  # noqa: E402

SIZES = {"n_rows", "rows_per_program", "batch", "z_row_stride"}
FP32_POINTERS = {"rstd_ptr", "dweight_parts_ptr", "state_ptr", "A_log_ptr", "dt_bias_ptr", "D_ptr"}
HEADER = {"spec": "norm_resources"}


def report(kernel, dtype: str, num_warps: int, constexprs: dict | None = None) -> dict:
    constexprs = constexprs or {}
    arguments = list(inspect.signature(kernel.fn).parameters)
    signature = {a: "constexpr" if a in constexprs else "i32" if a in SIZES else "fp32" if a == "eps" else
                 "*fp32" if a in FP32_POINTERS else f"*{dtype}" for a in arguments}
    return sm90_report(kernel, signature, [a for a in arguments if a.endswith("_ptr")], dict(num_warps=num_warps),
                       constexprs=constexprs)


def say(name: str, found: dict, warps: int, tiles: str = "") -> None:
    print(f"  {name:24s} {found['registers']:3d} registers, spills {found['spill_stores']:5d} B stored / "
          f"{found['spill_loads']:5d} B loaded, shared {found['shared'] // 1024:3d} KB, {warps} warps{tiles}",
          flush=True)


def norms(widths: list[int], dtype: str) -> None:
    for width in widths:
        constants = norm_constants(width, True)
        print(f"gated RMSNorm, width {width} (ROWS {constants['ROWS']}, BLOCK_W {constants['BLOCK_W']}), {dtype}")
        for name, kernel in jit_functions(render_kernel(TEMPLATE, constants, HEADER)).items():
            if name.startswith("gated_rmsnorm_"):
                say(name, report(kernel, dtype, constants["NUM_WARPS"]), constants["NUM_WARPS"])


def decode(dtype: str) -> None:
    d_model = 768
    constants = decode_constants(64, 128, 24, 1, 4, True, "data", True)
    kernels = jit_functions(render_kernel(DECODE_TEMPLATE, constants, HEADER))
    for batch in (1, 8):  # one row and the largest row tile (decode_plan.gemm_tiles)
        print(f"Mamba-2 130M decoding step, batch {batch}, {dtype}")
        for name, width, extra in (("in_proj_conv_fwd", d_model, dict(PRE_NORM=True)),
                                   ("out_proj_fwd", 24 * 64, dict(OUT_NORM=True, RESIDUAL=True))):
            tiles = gemm_tiles(batch, width)
            sizes = dict(D_MODEL=d_model, BLOCK_M=tiles.block_m, BLOCK_N=tiles.block_n, BLOCK_K=tiles.block_k,
                         PDL=True, **extra)
            say(name, report(kernels[name], dtype, tiles.warps, sizes), tiles.warps,
                f", {tiles.block_m} rows x {tiles.block_n} outputs x {tiles.block_k}")
        step = report(kernels["ssd_decode_step_fwd"], dtype, constants["NUM_WARPS"], dict(PDL=True))
        say("ssd_decode_step_fwd", step, constants["NUM_WARPS"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="64,256,512,1024,1536,4096")
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args(argv)
    norms([int(width) for width in args.widths.split(",") if width], args.dtype)
    if args.decode:
        decode(args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
