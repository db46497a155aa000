"""Registers, spills and shared memory of the rendered SSD kernels on Hopper, without a GPU.

    python benchmarks/kernel_resources.py --P 64 --N 128 [--dtype bf16] [--form fused|split]
        [--inference] [--tuning block_q=32,num_warps=8] [--backward-tuning block_q=64]
        [--kernel chunk_scan_fused_fwd] [--no-skip]

Renders the forward and backward modules exactly as a call at b=8, L=4096, H=32 would (the launcher's
`call_constants`, fed meta tensors), compiles each kernel for sm_90a with the Triton wheel's own ptxas,
and prints ptxas's resource report and the instruction count of each kernel's hottest loop (nvdisasm).
Pointers are taken as 16-byte aligned and sizes as multiples of 16, as Triton's JIT specialises them at
such shapes. Spilled registers (stack frame, spill stores) and shared
memory above 114 KB (two programs a multiprocessor) are what this is for: both cost speed that only the
device shows, and both can be read here first.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Under TRITON_INTERPRET=1 triton.jit makes interpreter functions, which do not compile: this script
# compiles, so it runs in its own process (the tests start it as one).
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from composer.codegen.render import render_kernel  # noqa: E402
from composer.kernels.semiseparable.chunk import HEADER, call_constants, default_tuning, launch_options  # noqa: E402
from composer.kernels.semiseparable.tuning import SSDTuning  # noqa: E402

HOPPER = GPUTarget("cuda", 90, 32)
SIZE_ARGUMENTS = {"seq_len", "n_heads", "n_chunks", "n_blocks"}
# Pointers to fp32 data whatever the operand type; every other pointer holds operands (x's dtype).
FP32_POINTERS = {"dt", "log_a", "cum", "D", "row_part", "column_part", "entering_share", "leaving_share",
                 "state_dot_grad", "ddt_parts", "dD_parts", "dlog_a"}
TRITON_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def modules(P: int, N: int, dtype: torch.dtype, tuning: SSDTuning, needs_grad: bool, chunk: int = 256,
            has_D: bool = True) -> dict:
    """{template: (rendered source, constants)} for the forward and (when needs_grad) the backward of one call."""
    meta = dict(device="meta", dtype=dtype)
    x, B = torch.empty(8, 4096, 32, P, **meta), torch.empty(8, 4096, 1, N, **meta)
    log_a = torch.empty(8, 4096, 32, **meta)
    forward, backward = call_constants(x, log_a, B, chunk, False, False, tuning, has_dt=True, has_D=has_D,
                                       needs_grad=needs_grad)
    sources = {"ssd_forward.py.jinja": (render_kernel("ssd_forward.py.jinja", forward, HEADER), forward)}
    if needs_grad:
        sources["ssd_backward.py.jinja"] = (render_kernel("ssd_backward.py.jinja", backward, HEADER), backward)
    return sources


def jit_functions(source: str) -> dict:
    """The rendered module's jit functions by name, loaded from a temporary file (what triton.compile takes)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location(Path(file.name).stem, file.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items() if isinstance(value, triton.runtime.jit.JITFunction)}


def launched_kernels(source: str, constants: dict) -> dict:
    """The module's kernels (not its helpers), jit functions taking only pointers and run-time sizes, each
    with its arguments and the launcher's options for it (`launch_options`)."""
    kernels = {}
    for name, value in jit_functions(source).items():
        arguments = list(inspect.signature(value.fn).parameters)
        if any(a.endswith("_ptr") for a in arguments) and all(
                a.endswith("_ptr") or a in SIZE_ARGUMENTS for a in arguments):
            kernels[name] = (value, arguments, launch_options(constants, name.startswith("state_passing")))
    return kernels


def sm90_report(kernel, signature: dict, divisible, options: dict, sass: bool = False,
                constexprs: dict | None = None) -> dict:
    """Compile `kernel` for sm_90a with `signature` (argument -> Triton type, "constexpr" for those given in
    `constexprs`, argument -> value), the arguments named in `divisible` taken as multiples of 16, and read
    ptxas's report: registers, stack frame, spill bytes, Triton's shared memory and, with `sass`, the
    instruction count of its hottest loop (nvdisasm)."""
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(signature) if a in divisible}
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs),
                              target=HOPPER, options=options)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as file:
        file.write(compiled.asm["ptx"])
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    cubin = file.name.removesuffix(".ptx") + ".cubin"
    report = subprocess.run([str(tools / "ptxas"), "-v", "--gpu-name=sm_90a", file.name, "-o", cubin],
                            capture_output=True, text=True, check=True).stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, report)
        return int(found.group(1)) if found else 0
    found = dict(registers=number(r"Used (\d+) registers"), stack=number(r"(\d+) bytes stack frame"),
                 spill_stores=number(r"(\d+) bytes spill stores"), spill_loads=number(r"(\d+) bytes spill loads"),
                 shared=compiled.metadata.shared)
    if sass:
        disassembly = subprocess.run([str(tools / "nvdisasm"), "-c", cubin], capture_output=True, text=True,
                                     check=True).stdout
        found["loop"] = hottest_loop(disassembly)
    return found


def resources(kernel, arguments: list[str], dtype: torch.dtype, options: dict) -> dict:
    """ptxas's report for one SSD kernel: registers, spill bytes, stack frame, Triton's shared memory and the
    hottest loop's instructions."""
    signature = {a: "i32" if a in SIZE_ARGUMENTS else
                 "*fp32" if a.removesuffix("_ptr") in FP32_POINTERS else f"*{TRITON_TYPES[dtype]}"
                 for a in arguments}
    return sm90_report(kernel, signature, arguments, options, sass=True)


SASS_INSTRUCTION = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/\s+(.*);")
SASS_LABEL = re.compile(r"^(\.L_x_\d+):")
SASS_BACK_BRANCH = re.compile(r"BRA\s+`\((\.L_x_\d+)\)")


def hottest_loop(sass: str) -> int:
    """Instructions in the longest innermost loop of a kernel's SASS (nvdisasm -c), 0 without a loop.

    An issue-bound kernel's time follows its loop's instruction count: with two 4-warp programs a
    multiprocessor there is little else to hide each instruction's latency behind (538874e: the fused
    walk at P=128, N=64, --no-skip --inference, went from 1121 to 834 and ran 24% faster)."""
    labels, loops, count = {}, [], 0
    for line in sass.splitlines():
        if label := SASS_LABEL.match(line):
            labels[label.group(1)] = count
        elif instruction := SASS_INSTRUCTION.match(line):
            branch = SASS_BACK_BRANCH.search(instruction.group(1))
            if branch and branch.group(1) in labels:  # a branch back to an earlier label closes a loop
                loops.append((labels[branch.group(1)], count))
            count += 1
    innermost = [(start, end) for start, end in loops
                 if not any(start <= s and e <= end and (s, e) != (start, end) for s, e in loops)]
    return max((end - start + 1 for start, end in innermost), default=0)


def parse_tuning(text: str | None, base: SSDTuning) -> SSDTuning:
    """`block_q=32,num_warps=8` over `base`; each value an int, true/false, none or a word (operand=fp16)."""
    if not text:
        return base
    words = {"true": True, "false": False, "none": None}
    fields = {}
    for item in text.split(","):
        name, value = item.split("=")
        value = value.strip().lower()
        fields[name.strip()] = words[value] if value in words else int(value) if value.lstrip("-").isdigit() else value
    return dataclasses.replace(base, **fields)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--P", type=int, default=64, help="head dim")
    parser.add_argument("--N", type=int, default=128, help="state size")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    parser.add_argument("--form", choices=["fused", "split"], help="forward form (default: the tuning's, fused "
                        "where it may be chosen)")
    parser.add_argument("--inference", action="store_true", help="the forward that saves nothing, no backward")
    parser.add_argument("--tuning", help="SSDTuning fields over the default tiles, e.g. block_q=32,num_warps=8")
    parser.add_argument("--backward-tuning", help="SSDTuning fields over the default backward tiles")
    parser.add_argument("--kernel", help="only kernels whose name contains this")
    parser.add_argument("--no-skip", action="store_true", help="render without the D skip, as benchmarks/ssd.py "
                        "calls the kernels (Mamba-2's layers have it)")
    args = parser.parse_args(argv)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    meta = dict(device="meta", dtype=dtype)
    tuning = default_tuning(torch.empty(1, 1, 1, args.P, **meta), torch.empty(1, 1, 1, args.N, **meta))
    tuning = parse_tuning(args.tuning, tuning)
    if args.backward_tuning:
        tuning = dataclasses.replace(tuning, backward=parse_tuning(args.backward_tuning, tuning.backward or tuning))
    form = args.form or ("split" if tuning.fused is False else "fused")
    tuning = dataclasses.replace(tuning, fused=form == "fused")
    print(f"P={args.P} N={args.N} {args.dtype} {form} forward, {'inference' if args.inference else 'training'}: "
          f"{tuning}")
    for template, (source, constants) in modules(args.P, args.N, dtype, tuning, needs_grad=not args.inference,
                                                 has_D=not args.no_skip).items():
        for name, (kernel, arguments, options) in launched_kernels(source, constants).items():
            if args.kernel and args.kernel not in name:
                continue
            r = resources(kernel, arguments, dtype, options)
            num_warps, num_stages = options["num_warps"], options["num_stages"]
            cap = f", at most {options['maxnreg']} registers" if "maxnreg" in options else ""
            print(f"  {name:24s} {r['registers']:3d} registers, stack {r['stack']:5d} B, spills "
                  f"{r['spill_stores']:5d} B stored / {r['spill_loads']:5d} B loaded, "
                  f"shared {r['shared'] // 1024:3d} KB, loop {r['loop']:4d} instructions"
                  f"  ({template}, {num_warps} warps, {num_stages} stages{cap})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
