"""Where a Mamba-2 130M layer's decoding step spends its time on one GPU, and which GEMM tiles it should take.

    python benchmarks/decode_tiles.py [--batches 1,2,4,8,16,64] [--sweep-batches 1,8] [--deadline-s 300] [--out F]

Every time is triton.testing.do_bench_cudagraph's median (the step runs in a CUDA graph when decoding, so the
host's launch overhead is not in it). For each batch: the layer's whole step in three kernels
(kernels/semiseparable/step.py's ssd_decode_layer_triton, without and with PDL) against the two-kernel step
around torch's GEMMs (RMSNorm, in_proj, conv + SSD step, gated RMSNorm, addmm with the residual), and which the
plan picks (decode_plan.fused_reason); torch's GEMMs and the SSD step kernel alone. At the sweep batches,
in_proj_conv_fwd's and out_proj_fwd's outputs a program and warps, and ssd_decode_step_fwd's head-dim rows a
program and warps swept (PDL off: alone a kernel has nothing to overlap), each checked against the plan's output
(NaN never passes), best first.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch
import triton
import triton.testing

from composer.codegen.render import load_kernel_once
from composer.kernels.norms.gated_rmsnorm import gated_rmsnorm_triton
from composer.kernels.semiseparable.decode_plan import DECODE_TEMPLATE, decode_constants, fused_reason, gemm_tiles
from composer.kernels.semiseparable.step import DECODE_HEADER, ssd_decode_layer_triton, ssd_decode_step_triton

D_MODEL, HEADS, HEAD_DIM, STATE, CONV = 768, 24, 64, 128, 4  # Mamba-2 130M
D_INNER = HEADS * HEAD_DIM


def bench(fn) -> float:
    """Median microseconds of fn replayed in a CUDA graph."""
    return 1e3 * triton.testing.do_bench_cudagraph(fn, rep=20, return_mode="median")


class Layer:
    """One Mamba-2 130M layer's weights and states at `batch`, bf16 weights, fp32 state."""

    def __init__(self, batch: int):
        torch.manual_seed(0)
        c = self.constants = decode_constants(HEAD_DIM, STATE, HEADS, 1, CONV, True, "data", True)
        bf16 = dict(device="cuda", dtype=torch.bfloat16)
        self.batch = batch
        self.hidden = torch.randn(batch, D_MODEL, **bf16)
        self.residual = torch.randn(batch, D_MODEL, **bf16)
        self.in_proj = torch.randn(c["U_WIDTH"], D_MODEL, **bf16) / D_MODEL ** 0.5
        self.out_proj = torch.randn(D_MODEL, HEADS * HEAD_DIM, **bf16) / (HEADS * HEAD_DIM) ** 0.5
        self.conv_weight = torch.randn(c["CHANNELS"], 1, CONV, **bf16) / 2
        self.conv_bias = torch.randn(c["CHANNELS"], **bf16) / 4
        self.conv_state = torch.randn(batch, c["CHANNELS"], CONV - 1, **bf16)
        self.state = torch.randn(batch, HEADS, HEAD_DIM, STATE, device="cuda")
        self.state0 = self.state.clone()
        self.dt_bias = torch.randn(HEADS, device="cuda") / 4
        self.A_log = torch.randn(HEADS, device="cuda") / 4
        self.D = torch.randn(HEADS, device="cuda")
        self.pre_norm = torch.rand(D_MODEL, **bf16) + 0.5
        self.out_norm = torch.rand(HEADS * HEAD_DIM, **bf16) + 0.5
        self.kernels = load_kernel_once(DECODE_TEMPLATE, c, DECODE_HEADER)
        self.u = torch.randn(batch, c["U_WIDTH"], **bf16)  # the step's sweep reads both before in_proj writes them
        self.xbc = torch.randn(batch, c["CHANNELS"], **bf16)
        self.y = torch.randn(batch, HEADS * HEAD_DIM, **bf16)
        self.out = torch.empty(batch, D_MODEL, **bf16)

    def three(self):
        return ssd_decode_layer_triton(
            self.constants, self.hidden, self.in_proj, self.conv_state, self.conv_weight, self.conv_bias, self.state,
            self.out_proj, pre_norm=(self.pre_norm, 1e-5), dt_bias=self.dt_bias, A_log=self.A_log, D=self.D,
            out_norm=(self.out_norm, 1e-5), residual=self.residual)

    def two(self):
        normed = torch.nn.functional.rms_norm(self.hidden, (D_MODEL,), self.pre_norm, 1e-5)
        u = torch.nn.functional.linear(normed, self.in_proj)
        y = ssd_decode_step_triton(self.constants, u, self.conv_state, self.conv_weight, self.conv_bias, self.state,
                                   self.dt_bias, self.A_log, self.D)
        y = gated_rmsnorm_triton(y, u[:, :HEADS * HEAD_DIM], self.out_norm, 1e-5)
        return torch.addmm(self.residual, y, self.out_proj.t())

    def three_with_pdl(self):
        os.environ["COMPOSER_DECODE_PDL"] = "1"
        try:
            return self.three()
        finally:
            del os.environ["COMPOSER_DECODE_PDL"]

    def restart(self):
        """The layer's first SSD state again, so that a check's step starts where the plan's did."""
        self.state.copy_(self.state0)

    def step_tile(self, block_p: int, warps: int):
        """ssd_decode_step_fwd at BLOCK_P head-dim rows a program."""
        kernels = load_kernel_once(DECODE_TEMPLATE, dict(self.constants, BLOCK_P=block_p), DECODE_HEADER)
        kernels.ssd_decode_step_fwd[(self.batch * HEADS, HEAD_DIM // block_p)](
            self.xbc, self.u, self.dt_bias, self.A_log, self.D, self.state, self.y, PDL=False, num_warps=warps)
        return self.y

    def in_proj_conv(self, block_n: int, warps: int):
        tiles = gemm_tiles(self.batch, D_MODEL)
        grid = (triton.cdiv(self.batch, tiles.block_m), triton.cdiv(self.constants["U_WIDTH"], block_n))
        self.kernels.in_proj_conv_fwd[grid](
            self.hidden, self.pre_norm, self.in_proj, self.conv_state, self.conv_weight, self.conv_bias, self.u,
            self.xbc, self.batch, 1e-5, D_MODEL=D_MODEL, BLOCK_M=tiles.block_m, BLOCK_N=block_n,
            BLOCK_K=tiles.block_k, PRE_NORM=True, PDL=False, num_warps=warps)
        return self.u

    def out_proj_gate(self, block_n: int, warps: int):
        tiles = gemm_tiles(self.batch, HEADS * HEAD_DIM)
        grid = (triton.cdiv(self.batch, tiles.block_m), triton.cdiv(D_MODEL, block_n))
        self.kernels.out_proj_fwd[grid](
            self.y, self.u, self.out_norm, self.out_proj, self.residual, self.out, self.batch, 1e-5,
            D_MODEL=D_MODEL, BLOCK_M=tiles.block_m, BLOCK_N=block_n, BLOCK_K=tiles.block_k, OUT_NORM=True,
            RESIDUAL=True, PDL=False, num_warps=warps)
        return self.out


def error(a: torch.Tensor, b: torch.Tensor) -> float:
    e = ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
    return float("inf") if e != e else e


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,2,4,8,16,64")
    parser.add_argument("--sweep-batches", default="1,8")
    parser.add_argument("--deadline-s", type=float, default=300)
    parser.add_argument("--out", default="decode_tiles.log")
    args = parser.parse_args()
    start = time.time()
    log = open(args.out, "w")

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}; "
        f"Mamba-2 130M layer (d_model {D_MODEL}, {HEADS} heads x {HEAD_DIM}, state {STATE}), bf16, fp32 state")
    with torch.no_grad():
        for batch in (int(b) for b in args.batches.split(",")):
            layer = Layer(batch)
            c = layer.constants
            say(f"\nbatch {batch}: whole step three kernels {bench(layer.three):.1f} us (with PDL "
                f"{bench(layer.three_with_pdl):.1f} us); two kernels around torch's GEMMs "
                f"{bench(layer.two):.1f} us (the plan: {fused_reason(batch) or 'three'})")
            normed = torch.nn.functional.rms_norm(layer.hidden, (D_MODEL,), layer.pre_norm, 1e-5)
            say(f"  torch in_proj {bench(lambda: torch.nn.functional.linear(normed, layer.in_proj)):.1f} us, "
                f"out_proj+residual {bench(lambda: torch.addmm(layer.residual, layer.y, layer.out_proj.t())):.1f} us"
                f"; weights read once at 4.8 TB/s: {2 * (layer.in_proj.numel() + layer.out_proj.numel()) / 4.8e6:.1f}"
                f" us")
            step = layer.kernels.ssd_decode_step_fwd
            say(f"  ssd_decode_step_fwd {bench(lambda: step[(batch * HEADS, HEAD_DIM // c['BLOCK_P'])](layer.xbc, layer.u, layer.dt_bias, layer.A_log, layer.D, layer.state, layer.y, PDL=False, num_warps=c['NUM_WARPS'])):.1f} us")  # noqa: E501
            if str(batch) not in args.sweep_batches.split(","):
                continue
            gemm_choices = list(itertools.product((1, 2, 4, 8), (1, 2, 4, 8)))  # (BLOCK_N, warps)
            in_tiles, out_tiles = gemm_tiles(batch, D_MODEL), gemm_tiles(batch, D_INNER)
            sweeps = [("in_proj_conv_fwd", layer.in_proj_conv, "BLOCK_N", gemm_choices,
                       (in_tiles.block_n, in_tiles.warps)),
                      ("out_proj_fwd", layer.out_proj_gate, "BLOCK_N", gemm_choices,
                       (out_tiles.block_n, out_tiles.warps)),
                      ("ssd_decode_step_fwd", layer.step_tile, "BLOCK_P",
                       list(itertools.product((4, 8, 16, 32), (1, 2, 4, 8))), (c["BLOCK_P"], c["NUM_WARPS"]))]
            for name, run, tile_name, choices, default in sweeps:
                layer.restart()
                expected = run(*default).clone()
                rows = []
                for choice in choices:
                    if time.time() - start > args.deadline_s:
                        continue
                    try:
                        layer.restart()
                        err = error(run(*choice), expected)
                        rows.append((bench(lambda: run(*choice)), choice, err))
                    except Exception as exc:  # a tile the GPU cannot take (registers, shared memory): say, go on
                        rows.append((float("inf"), choice, f"{type(exc).__name__}"))
                rows.sort(key=lambda row: row[0])
                base = next((t for t, choice, _ in rows if choice == default), float("nan"))
                say(f"  {name}: the plan's ({tile_name}, warps) {default} {base:.1f} us; best of {len(rows)}:")
                for t, choice, err in rows[:5]:
                    say(f"    {choice} {t:.1f} us  err {err if isinstance(err, str) else f'{err:.1e}'}")
    say(f"[{time.time() - start:.0f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
