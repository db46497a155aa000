"""benchmarks/norm_resources.py: the gated RMSNorm's kernels and the three-kernel decoding step compile for sm_90a
without spilling, read without a GPU (the script compiles, which the tests' interpreter cannot: its own process)."""

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "norm_resources.py"
REPORT = re.compile(r"^  (\w+) +(\d+) registers, spills +(\d+) B stored / +(\d+) B loaded, shared +(\d+) KB", re.M)


def test_no_kernel_spills():
    done = subprocess.run([sys.executable, str(SCRIPT), "--widths", "64,256,1024", "--decode"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TRITON_INTERPRET": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    found = REPORT.findall(done.stdout)
    names = [name for name, *_ in found]
    assert names.count("gated_rmsnorm_bwd") == 3 and names.count("in_proj_conv_fwd") == 2, done.stdout
    for name, registers, stored, loaded, _ in found:
        assert 0 < int(registers) <= 255 and int(stored) == int(loaded) == 0, (name, done.stdout)
