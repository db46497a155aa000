"""How many trials one machine trains at once: `mixc search --workers auto`.

On a GPU the count comes from the planned memory of one trial against the memory free on each GPU, and
from the cores (two a worker process: its intra-op threads on a CPU, its launching and data on a GPU); on
a CPU from the cores alone. The planned figure is the spec as written, not its largest point, so it is a guide, and it
is said with the count.
"""

from __future__ import annotations

from composer.planner import plan
from composer.report import human_bytes
from composer.search.settings import SearchSettings
from composer.spec import Spec

# At most this many workers a GPU: a trial's step is launch-bound (a 4-layer d_model 128 hybrid kept one H200 busy
# about a third of its step), so side by side processes fill the gaps until the GPU is busy: 1, 2, 4 and 8 of them
# made 44, 87, 107 and 109 steps a second in all (benchmarks/results/search_workers_h200_2026-12-04_5b8b5c0.log).
MAX_WORKERS_PER_GPU = 4
# The share of a GPU's free memory the workers may plan to fill (allocator caches and CUDA contexts take the rest).
MEMORY_SHARE = 0.8
CORES_PER_WORKER = 2


def trial_bytes(spec: Spec, settings: SearchSettings) -> int:
    """Planned GPU memory of one trial: fp32 weights, their gradients and AdamW's two moments (16 bytes a
    parameter), the forward's activations for one batch (the planner's bytes a token), and the logits in fp32
    with their gradient (8 bytes a token and vocabulary entry)."""
    the_plan = plan(spec)
    tokens = settings.train.batch_size * settings.task.seq_len
    return int(16 * the_plan.params + the_plan.total("act_bytes") * tokens + 8 * tokens * spec.padded_vocab)


def auto_workers(per_trial: int, free_bytes: list[int], cores: int) -> tuple[int, str]:
    """(workers, why) for GPUs with `free_bytes` free each ([] on a CPU) and `cores` cores."""
    by_cores = max(1, cores // CORES_PER_WORKER)
    if not free_bytes:
        return by_cores, f"{by_cores} on {cores} cores ({CORES_PER_WORKER} a worker)"
    per_gpu = [min(MAX_WORKERS_PER_GPU, int(MEMORY_SHARE * free // per_trial)) for free in free_bytes]
    count = max(1, min(sum(per_gpu), by_cores))
    return count, (f"{count}: {human_bytes(per_trial)} planned a trial against "
                   f"{', '.join(human_bytes(free) for free in free_bytes)} free on {len(free_bytes)} "
                   f"GPU{'s' if len(free_bytes) > 1 else ''} (at most {MAX_WORKERS_PER_GPU} a GPU), "
                   f"and {cores} cores ({CORES_PER_WORKER} a worker)")
