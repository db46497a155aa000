"""`mixc tune SPEC`: measure the SSD scans a spec runs on this GPU and write the fastest right tunings as
entries of the user's tunings file, which the plan then reads before the built-in ones."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from composer.kernels.plan import Target
from composer.planner import block_kernels
from composer.spec import Spec


class TuneError(RuntimeError):
    """Nothing to measure here; the message says why and what to do."""


@dataclass(frozen=True)
class TunedScan:
    sizes: object         # ScanSizes
    results: list         # Measured, the plan's current tuning first
    entry: dict | None    # the entry written, None when the current tuning stayed fastest


def scans_of(spec: Spec, target: Target) -> dict:
    """The distinct scans a resolved spec's layers run on the generated kernels, with the blocks running each."""
    scans: dict = {}
    for name, planned in block_kernels(spec, target).items():
        for scan in planned.entry.scans if planned.path == "generated" else ():
            if scan is not None:
                scans.setdefault(scan.sizes, []).append(name)
    return scans


def tune(spec: Spec, precision: str = "bf16", batch: int = 8, seq_len: int | None = None,
         out: Path | None = None, limit: int | None = None, measure: Callable | None = None,
         say: Callable[[str], None] = print) -> list[TunedScan]:
    """Tune every scan of a resolved spec on this process's GPU (or, under TRITON_INTERPRET=1, the
    interpreter) and write the winners to `out` (default: the user's tunings file)."""
    from composer.kernels.semiseparable import tuning_table
    from composer.kernels.semiseparable.tune import tune_scan

    target = Target.current(precision)
    if not target.on_gpu and os.environ.get("TRITON_INTERPRET") != "1":
        raise TuneError("mixc tune measures the kernels on a CUDA GPU and none is visible here; run it on the "
                        "GPU the model will train on (TRITON_INTERPRET=1 tunes the Triton interpreter instead)")
    device = torch.device("cuda" if target.on_gpu else "cpu")
    seq_len = seq_len or min(spec.max_len, 8192)
    scans = scans_of(spec, target)
    if not scans:
        raise TuneError(f"spec `{spec.name}` has no layer on the generated SSD kernels: nothing to tune")
    out = out or tuning_table.user_file()
    tuned = []
    for sizes, blocks in scans.items():
        say(f"scan P={sizes.head_dim} N={sizes.state} H={sizes.heads} G={sizes.groups} chunk={sizes.chunk} "
            f"(blocks {', '.join(blocks)}) at b={batch}, L={seq_len}, {precision}, on {target.gpu}:")
        results = tune_scan(sizes, precision, batch, seq_len, device, measure, limit,
                            progress=lambda m: say(f"  {m.outcome:>4s}  "
                                                   f"{'-' if m.ms is None else f'{m.ms:.3f} ms'}  {m.tuning}"))
        current, ok = results[0], [m for m in results if m.ms is not None]
        best = min(ok, key=lambda m: m.ms) if ok else None
        entry = None
        if best is not None and best is not current:
            entry = {"gpu": target.gpu, "operand": precision, "head_dim": sizes.head_dim, "state": sizes.state,
                     "regime": "any", "tuning": tuning_table.tuning_fields(best.tuning),
                     "measured": f"mixc tune {spec.name} on {target.gpu}, {datetime.date.today()}: {best.ms:.3f} ms "
                                 f"forward+backward at b={batch}, L={seq_len}, H={sizes.heads}, G={sizes.groups}, "
                                 f"chunk {sizes.chunk}; the plan's tuning took "
                                 f"{'-' if current.ms is None else f'{current.ms:.3f}'} ms; {len(ok)} of "
                                 f"{len(results)} candidates ran and matched"}
            tuning_table.write_entries(out, [entry])
            say(f"  kept {best.tuning}: {best.ms:.3f} ms; wrote it to {out}")
        else:
            say("  the plan's tuning stayed fastest; nothing written")
        tuned.append(TunedScan(sizes, results, entry))
    return tuned
