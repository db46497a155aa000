"""benchmarks/delta_resources.py: the delta-rule kernels compile for sm_90a within an H200's limits, read
without a GPU (the script compiles, which the tests' interpreter cannot: it runs as its own process)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "delta_resources.py"
REPORT = re.compile(r"^  (\w+) +(\d+) registers, spills +(\d+) B stored / +(\d+) B loaded, shared +(\d+) KB", re.M)
SHARED_KB_PER_PROGRAM = 227  # an H200 multiprocessor's most for one program


@pytest.mark.parametrize("args", [("--K", "128", "--V", "128"),
                                  pytest.param(("--K", "256", "--V", "256"), marks=pytest.mark.slow),
                                  pytest.param(("--K", "64", "--V", "64", "--dtype", "fp32"), marks=pytest.mark.slow)])
def test_every_kernel_compiles_within_the_h200_s_shared_memory(args):
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TRITON_INTERPRET": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    found = {name: tuple(map(int, numbers)) for name, *numbers in REPORT.findall(done.stdout)}
    assert set(found) == {"delta_solve_fwd", "delta_wu_fwd", "delta_state_fwd", "delta_output_fwd", "delta_state_bwd",
                          "delta_chunk_bwd", "delta_step"}
    for name, (registers, _, _, shared_kb) in found.items():
        assert 0 < registers <= 255 and shared_kb <= SHARED_KB_PER_PROGRAM, (name, done.stdout)
