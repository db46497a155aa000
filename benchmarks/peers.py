"""Import peer implementations from a folder outside the repository's history.

mamba_ssm's Triton SSD kernels live in `.peers/mamba_ssm/ops/triton/` (copied from a
fetched state-spaces/mamba; ignored by .git/info/exclude, never committed). The
package's own `__init__` imports CUDA extensions we do not build, so empty package
modules stand in for `mamba_ssm` and `mamba_ssm.ops`, and only the Triton files and
their small utils are executed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import traceback
import types
from contextlib import contextmanager
from pathlib import Path

from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import KernelInterface

PEERS = Path(__file__).resolve().parents[1] / ".peers"


def _namespace(name: str, path: Path) -> None:
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module


def _mamba_triton(module: str, name: str):
    """`name` from mamba_ssm.ops.triton.<module>, imported from .peers/, or an ImportError saying why."""
    root = PEERS / "mamba_ssm"
    if not (root / "ops" / "triton" / f"{module}.py").exists():
        raise ImportError(f"no mamba_ssm Triton kernels under {root}: copy mamba_ssm/ops/triton and "
                          "mamba_ssm/utils from state-spaces/mamba there (see benchmarks/README.md)")
    _namespace("mamba_ssm", root)
    _namespace("mamba_ssm.ops", root / "ops")
    return getattr(importlib.import_module(f"mamba_ssm.ops.triton.{module}"), name)


def mamba_chunk_scan_combined():
    """mamba_ssm's Mamba-2 SSD, mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined."""
    return _mamba_triton("ssd_combined", "mamba_chunk_scan_combined")


def mamba_rmsnorm_gated():
    """mamba_ssm's fused gated RMSNorm, mamba_ssm.ops.triton.layernorm_gated.rmsnorm_fn."""
    return _mamba_triton("layernorm_gated", "rmsnorm_fn")


def _autotuner_inside(value) -> Autotuner | None:
    """The Autotuner `value` is or wraps: fla stacks @triton.heuristics over @triton.autotune, so a module
    attribute is often a Heuristics whose .fn is the tuner."""
    while isinstance(value, KernelInterface) and not isinstance(value, Autotuner):
        value = getattr(value, "fn", None)
    return value if isinstance(value, Autotuner) else None


def autotuners(package: str) -> list[Autotuner]:
    """Every Triton autotuner in `package`'s loaded modules, once each, also those under a @triton.heuristics.
    (Missing those left most of fla's kernels whole in every warming child: each child compiled all their
    configurations and timed them beside the others, and the H200 runs gave no result in 440-545 s.)"""
    found = (_autotuner_inside(value) for name, module in list(sys.modules.items())
             if name == package or name.startswith(package + ".") for value in vars(module).values())
    tuners = {id(tuner): tuner for tuner in found if tuner is not None}
    return list(tuners.values())


def forget_autotuning(package: str = "mamba_ssm") -> int:
    """Clear the picks of every Triton autotuner in `package`'s loaded modules, so the next call tunes
    again. mamba_ssm's kernels tune on their first call in a process, and their times swing between
    processes (up to 2x on the H200) with what that one tuning picked. Returns how many were cleared."""
    tuners = autotuners(package)
    for tuner in tuners:
        tuner.cache.clear()
    return len(tuners)


def keep_config_share(package: str, index: int, count: int) -> int:
    """Leave each autotuner of `package` (loaded) only its share `index` of `count` of its configurations
    (every count-th from index; a tuner with fewer than `count` keeps configs[index % len]): what one
    `warm_compile_cache` child compiles. Returns the configurations kept in all."""
    kept = 0
    for tuner in autotuners(package):
        share = tuner.configs[index::count] or [tuner.configs[index % len(tuner.configs)]]
        tuner.configs, kept = share, kept + len(share)
    return kept


def _run_once(kernel_call, quantiles) -> list[float]:
    kernel_call()
    return [1.0] * len(quantiles)


def compile_only(package: str) -> int:
    """Make every autotuner of `package` (loaded) run each configuration once instead of timing it, and store no
    timings: a warming child then only compiles (into Triton's on-disk cache) and its picks, all ties, go nowhere.
    Timing in the children most likely sank the first warm run on the H200: fourteen of them each benchmarking their
    shares at every shape, time-sliced on one GPU, gave no result in 545 s. (Triton 3.6.0's Autotuner keeps its
    benchmark function in `_do_bench`, and fla passes `cache_results=True`, which would store the ties on disk
    for the timing process to find.) Returns how many autotuners it changed."""
    tuners = autotuners(package)
    for tuner in tuners:
        tuner._do_bench, tuner.cache_results = _run_once, False
    return len(tuners)


def warm_compile_cache(argv: list[str], count: int, timeout_s: float) -> list[dict]:
    """Run `python argv --warm-share I/count` for I = 0..count-1 at once, and wait for them.

    fla autotunes every kernel over up to 36 configurations at each new key, compiling each one in turn (on
    the H200 one chunk_gla forward+backward took more than 240 s). A child given a share (keep_config_share)
    compiles only that share into Triton's on-disk cache and exits; the process that times fla afterwards then
    autotunes over all the configurations alone on the GPU, finding every kernel compiled, so its picks are
    its own and only the benchmarking of each configuration remains. The children time nothing (compile_only).
    Returns each child's row (run_isolated)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: run_isolated(argv + ["--warm-share", f"{i}/{count}"], timeout_s),
                             range(count)))


def warmed(argv: list[str], count: int, timeout_s: float) -> dict:
    """warm_compile_cache, timed and said: the row a results file keeps under "warm"."""
    import time
    started = time.time()
    rows = warm_compile_cache(argv, count, timeout_s)
    seconds = round(time.time() - started, 1)
    print(f"{count} processes compiled their shares of fla's configurations in {seconds} s: "
          + ", ".join(str(row.get("configs", row.get("error", "?"))) for row in rows), flush=True)
    return {"processes": count, "seconds": seconds, "rows": rows}


def add_warm_arguments(parser) -> None:
    """--warm N (the parent) and --warm-share I/N (its children), as every fla benchmark takes them."""
    parser.add_argument("--warm", type=int, default=0, help="compile fla's autotuning configurations first in this "
                        "many processes at once, each its share (warm_compile_cache); 0: fla compiles as it tunes")
    parser.add_argument("--warm-share", help=argparse.SUPPRESS)  # a child of --warm: its share I/N


def take_share(module: str, share: str) -> int:
    """A --warm-share child's start: import `module` (which builds fla's autotuners), keep only this share I/N
    of their configurations (keep_config_share) and make them compile without timing (compile_only); returns
    the configurations kept."""
    importlib.import_module(module)
    kept = keep_config_share("fla", *parse_share(share))
    compile_only("fla")
    return kept


def parse_share(text: str) -> tuple[int, int]:
    """'3/14' -> (3, 14), a --warm-share argument."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError(f"--warm-share takes I/N with 0 <= I < N, got {text!r}")
    return int(index), int(count)


def _stand_in_hub() -> None:
    """mamba_ssm's module classes mix in huggingface_hub's PyTorchModelHubMixin (saving and loading only); where
    huggingface_hub is not installed an empty mixin stands in."""
    if importlib.util.find_spec("huggingface_hub") is None:
        hub = types.ModuleType("huggingface_hub")
        hub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {})
        sys.modules["huggingface_hub"] = hub


def mamba2_module():
    """mamba_ssm's Mamba2 layer, mamba_ssm.modules.mamba2.Mamba2, and its fused add + RMSNorm,
    mamba_ssm.ops.triton.layer_norm.layer_norm_fn (what its Block runs with fused_add_norm). Without
    causal_conv1d (not among the peer files) Mamba2.step takes its plain-PyTorch conv update; construct it
    with use_mem_eff_path=False for the same reason."""
    _mamba_triton("selective_state_update", "selective_state_update")  # the package stand-ins
    _stand_in_hub()
    root = PEERS / "mamba_ssm"
    _namespace("mamba_ssm.modules", root / "modules")
    _namespace("mamba_ssm.distributed", root / "distributed")
    mamba2 = importlib.import_module("mamba_ssm.modules.mamba2")
    return mamba2.Mamba2, importlib.import_module("mamba_ssm.ops.triton.layer_norm").layer_norm_fn


@contextmanager
def time_limit(seconds: int):
    """Raise TimeoutError in this (main) thread after `seconds`, once the running call returns to Python (e.g.
    between the kernels a stalled autotune is building): a peer that stalls is a result, not a hung run.
    0: no limit."""
    def expire(signum, frame):
        raise TimeoutError(f"no result within {seconds} s")
    if not seconds:
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def failure(exc: BaseException, frames: int = 4) -> dict:
    """An exception as a result row's {"error", "where"}: its type and message, and its last `frames` frames."""
    where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
    return {"error": f"{type(exc).__name__}: {str(exc)[:300]}", "where": where[-frames:]}


ROW = "ROW "  # the prefix of the one line an isolated child prints its result on


def print_row(row: dict) -> None:
    """What a child run by `run_isolated` prints as its result."""
    print(ROW + json.dumps(row), flush=True)


def run_isolated(argv: list[str], timeout_s: float) -> dict:
    """`python argv` in a child process with CUDA_LAUNCH_BLOCKING=1: the dict its last `print_row` printed, or
    {"error": ...}. An illegal memory access spoils its CUDA context for every later call, so each case a
    crash may end runs alone; a blocking launch makes the traceback name the kernel that crashed."""
    env = {**os.environ, "CUDA_LAUNCH_BLOCKING": "1"}
    try:
        child = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"no result in {timeout_s:.0f} s"}
    rows = [line[len(ROW):] for line in child.stdout.splitlines() if line.startswith(ROW)]
    return json.loads(rows[-1]) if rows else {"error": f"exit {child.returncode}: {child.stderr[-400:]}"}
