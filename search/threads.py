"""How many CPU threads a training process gives torch: one choice for `mixc train` and search workers.

torch's default is one intra-op thread per core; on a machine other processes already keep busy,
those threads wait on each other and a small model trains many times slower (README's 20-second
`mixc train` took over 300 s on a loaded 2-core machine, 46 s with one thread). So the cores this
process may run on, less those the load average says are taken, are shared among the workers.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores() -> int:
    """Cores other processes keep busy: the last minute's load average, rounded down."""
    try:
        return int(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0


def cpu_threads(workers: int = 1, cores: int | None = None, busy: int | None = None) -> int:
    """Threads for each of `workers` training processes: the idle cores shared out, at least one."""
    cores = available_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, (cores - busy) // max(1, workers))


def use_cpu_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op thread count: `threads` when given, else `cpu_threads(workers)` unless
    OMP_NUM_THREADS or MKL_NUM_THREADS already says how many; return the count torch now uses."""
    if threads:
        torch.set_num_threads(threads)
    elif not (os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")):
        torch.set_num_threads(cpu_threads(workers))
    return torch.get_num_threads()
