"""Measure SSD tunings on this machine and pick the fastest that is right: what `mixc tune` runs.

Each candidate is the plan's current tuning with a few fields changed (CANDIDATE_FIELDS). A candidate runs
only if it compiles on this GPU, and counts only if its output and gradients match the current tuning's
(bf16 tolerance); then its forward+backward is timed (triton.testing.do_bench's median on CUDA).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from composer.kernels.plan import Target
from composer.kernels.semiseparable.chunk import ssd_chunked_triton
from composer.kernels.semiseparable.plan import ScanSizes, tuning_for_batch
from composer.kernels.semiseparable.tuning import SSDTuning

# The forward's fields a candidate varies, over the tuning the plan picks now; the backward keeps its own.
CANDIDATE_FIELDS = {"block_q": (32, 64), "num_stages": (2, 3), "num_warps": (4, 8), "fused": (False, True)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Measured:
    tuning: SSDTuning
    ms: float | None      # forward+backward; None when it did not compile or was wrong
    outcome: str          # "ok", "wrong: ...", "does not fit: ..."


def candidates(current: SSDTuning, limit: int | None = None) -> list[SSDTuning]:
    """The current tuning first, then each combination of CANDIDATE_FIELDS over it (no repeats)."""
    out = [current]
    for values in itertools.product(*CANDIDATE_FIELDS.values()):
        candidate = dataclasses.replace(current, **dict(zip(CANDIDATE_FIELDS, values)))
        if candidate not in out:
            out.append(candidate)
    return out[:limit] if limit else out


def default_measure(step: Callable[[], None], device: torch.device) -> float:
    """Milliseconds of `step`: do_bench's median on CUDA; elsewhere (the interpreter) the median of 3 runs."""
    if device.type == "cuda":
        import triton.testing
        return triton.testing.do_bench(step, return_mode="median")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _inputs(sizes: ScanSizes, batch: int, seq_len: int, dtype, device):
    generator = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=generator)).to(device=device, dtype=dtype).requires_grad_()
    x = rand(batch, seq_len, sizes.heads, sizes.head_dim)
    B, C = (rand(batch, seq_len, sizes.groups, sizes.state, scale=sizes.state ** -0.5) for _ in range(2))
    dt = (torch.rand(batch, seq_len, sizes.heads, generator=generator) * 0.1 + 0.01).to(device).requires_grad_()
    log_a = (-dt.detach() * 0.5).requires_grad_() if sizes.decays else None
    return x, log_a, B, C, (dt if sizes.has_dt else None)


def _run(tuning, sizes, inputs):
    x, log_a, B, C, dt = inputs
    D = torch.ones(sizes.heads, device=x.device, requires_grad=True) if sizes.has_D else None
    y, _ = ssd_chunked_triton(x, log_a, B, C, sizes.chunk, return_final_state=False, dt=dt, D=D, tuning=tuning)
    leaves = [t for t in (x, log_a, B, C, dt) if t is not None]
    grads = torch.autograd.grad(y.float().square().sum(), leaves)
    return [y] + list(grads)


def _mismatch(got, want) -> str | None:
    for index, (g, w) in enumerate(zip(got, want)):
        error = ((g.float() - w.float()).norm() / w.float().norm().clamp_min(1e-12)).item()
        if not error < 2e-2:  # bf16 operands round differently with other tiles; NaN never passes
            return f"{'y' if index == 0 else f'gradient {index}'} differs by {error:.1e}"
    return None


def tune_scan(sizes: ScanSizes, operand: str, batch: int, seq_len: int, device: torch.device,
              measure: Callable | None = None, limit: int | None = None,
              progress: Callable[[Measured], None] | None = None) -> list[Measured]:
    """Every candidate's outcome for one scan, the current tuning's first."""
    from triton.runtime.errors import OutOfResources

    measure = measure or default_measure
    inputs = _inputs(sizes, batch, seq_len, DTYPES[operand], device)
    base = current_tuning(sizes, operand, batch, device)
    reference = _run(base, sizes, inputs)
    results = []
    for candidate in candidates(base, limit):
        try:
            wrong = _mismatch(_run(candidate, sizes, inputs), reference)
            if wrong:
                outcome = Measured(candidate, None, f"wrong: {wrong}")
            else:
                outcome = Measured(candidate, measure(lambda: _run(candidate, sizes, inputs), device), "ok")
        except (ValueError, OutOfResources) as error:
            outcome = Measured(candidate, None, f"does not fit: {str(error).splitlines()[0][:100]}")
        results.append(outcome)
        if progress:
            progress(outcome)
    return results


def current_tuning(sizes: ScanSizes, operand: str, batch: int, device: torch.device) -> SSDTuning:
    """The tuning the plan gives a training forward of this batch on this device now."""
    target = Target.of(device)
    return tuning_for_batch(sizes, operand, True, batch, target.multiprocessors, target.gpu)
