"""benchmarks/kernel_resources.py: ptxas's report for the rendered kernels, read without a GPU.

The script compiles, which the interpreter the tests run under cannot: it runs as its own process."""

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernel_resources.py"
REPORT = re.compile(r"^  (\w+) +(\d+) registers, stack +(\d+) B, spills +(\d+) B stored / +(\d+) B loaded, "
                    r"shared +(\d+) KB, loop +(\d+) instructions", re.M)


def report(*args: str) -> dict:
    """{kernel: (registers, stack, spill stores, spill loads, shared KB, hottest loop's instructions)} as the
    script prints them."""
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TRITON_INTERPRET": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: tuple(map(int, numbers)) for name, *numbers in REPORT.findall(done.stdout)}


def test_inference_report_lists_the_fused_kernel_alone_with_its_resources():
    kernels = report("--P", "16", "--N", "16", "--dtype", "fp16", "--form", "fused", "--inference",
                     "--tuning", "block_p=16,block_q=16,operand=fp16")
    assert list(kernels) == ["chunk_scan_fused_fwd"]  # nothing saved, no backward; helpers are not kernels
    registers, stack, spill_stores, _, shared, _ = kernels["chunk_scan_fused_fwd"]
    assert 0 < registers <= 255 and shared > 0
    assert stack == spill_stores == 0  # 16x16 tiles fit in registers


def test_training_report_covers_the_split_forward_and_the_backward():
    kernels = report("--P", "16", "--N", "16", "--dtype", "fp16", "--form", "split", "--kernel", "state_passing")
    assert sorted(kernels) == ["state_passing_bwd", "state_passing_fwd"]


def test_state_pieces_shrink_the_output_kernels_shared_memory():
    """output_block_n, forward through --tuning and backward through --backward-tuning: C h^T and B G^T
    taken in state pieces hold less of the (N, P) state in shared memory than one whole product."""
    def shared_kb(pieces: int) -> dict:
        tiles = f"block_p=32,block_q=64,num_stages=2,output_block_n={pieces}"
        kernels = report("--P", "32", "--N", "128", "--dtype", "fp16", "--form", "split", "--kernel", "chunk_scan_",
                         "--tuning", tiles, "--backward-tuning", tiles)
        wanted = ("chunk_scan_fwd", "chunk_scan_bwd_dx")
        return {name: numbers[4] for name, numbers in kernels.items() if name in wanted}
    whole, pieces = shared_kb(128), shared_kb(32)
    assert sorted(whole) == sorted(pieces) == ["chunk_scan_bwd_dx", "chunk_scan_fwd"]
    assert all(pieces[name] < whole[name] for name in whole), (whole, pieces)


def test_a_register_cap_reaches_ptxas_for_all_but_the_state_passing_kernels():
    """max_registers becomes maxnreg where the launcher passes it (launch_options), so the offline report
    reads the registers the GPU would run with."""
    tiles = "block_p=16,block_q=16,block_n=16,max_registers=40,state_num_warps=8,operand=fp16"
    kernels = report("--P", "16", "--N", "16", "--dtype", "fp16", "--form", "split", "--inference",
                     "--kernel", "chunk_scan_fwd", "--tuning", tiles)
    assert list(kernels) == ["chunk_scan_fwd"] and kernels["chunk_scan_fwd"][0] <= 40  # 48 uncapped
    done = subprocess.run([sys.executable, str(SCRIPT), "--P", "16", "--N", "16", "--dtype", "fp16", "--form",
                           "split", "--inference", "--kernel", "state_passing", "--tuning", tiles],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "TRITON_INTERPRET": "0"})
    assert "(ssd_forward.py.jinja, 8 warps, 3 stages)" in done.stdout  # its own warps, no cap


def test_hottest_loop_counts_the_walks_instructions_per_block():
    """The fused walk's loop is one block of steps: more steps a block, and the D skip, take more of its
    instructions."""
    def loop(*extra: str) -> int:
        kernels = report("--P", "16", "--N", "16", "--dtype", "fp16", "--form", "fused", "--inference",
                         "--kernel", "fused", *extra)
        return kernels["chunk_scan_fused_fwd"][5]
    short = loop("--tuning", "block_p=16,block_q=16,operand=fp16", "--no-skip")
    assert 0 < short < loop("--tuning", "block_p=16,block_q=32,operand=fp16", "--no-skip")
    assert short < loop("--tuning", "block_p=16,block_q=16,operand=fp16")  # with the skip, y += D x in the loop
