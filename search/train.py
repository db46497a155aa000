"""Train a built model on a synthetic task and score it on a held-out stream.

One recipe for `mixc train` and for every search trial, so that a trial's accuracy is
what a person reproduces by hand: AdamW, linear warmup then cosine decay to a tenth of
the peak, gradient clipping at 1, fresh batches every step from the seed's stream, and
held-out batches from a stream no training step ever draws from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from composer import SpecError, build
from composer.layers.weights import save
from composer.search.tasks import IGNORE, MQAR, Task, TaskError, accuracy
from composer.spec import Spec

# Forward passes a latency measure takes the median of (after one warm-up pass).
LATENCY_REPEATS = 5
# The held-out stream's seed is the training seed plus this: far from any seed a person picks.
HELD_OUT_SEED_OFFSET = 1_000_003
FINAL_LR_FRACTION = 0.1
PRECISIONS = ("fp32", "bf16")
# `compile` settings -> torch.compile's mode (None: its default). reduce_overhead replays each step's kernels
# as CUDA graphs: a small model's step is mostly launches, thousands a step through eager PyTorch.
COMPILE_MODES = {"none": None, "default": None, "reduce_overhead": "reduce-overhead", "max_autotune": "max-autotune"}
# The progress bar's loss is refreshed every this many steps (reading it synchronises with the GPU).
PROGRESS_EVERY = 25


@dataclass(frozen=True)
class TrainSettings:
    """What a search may vary as `lr`, `weight_decay`, `batch_size`, `steps`, `warmup`, `seed`."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup: int | None = None  # steps; None: a tenth of `steps`
    seed: int = 0
    eval_batches: int = 8
    # Score on held-out data every this many steps (0: only at the end): what a pruner reads.
    eval_every: int = 0
    # "bf16": forward passes under bf16 autocast (the SSD kernels then multiply bf16 operands on the
    # tensor cores, accumulating in fp32); "fp32": none. Weights and optimizer state stay fp32.
    precision: str = "fp32"
    # "none": eager; else the training step's loss (forward and loss, and so its backward) runs through
    # torch.compile in that mode (COMPILE_MODES), compiled once a trial at its fixed batch and length.
    compile: str = "none"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")

    def warmup_steps(self) -> int:
        return self.steps // 10 if self.warmup is None else min(self.warmup, self.steps)


@dataclass(frozen=True)
class TrainResult:
    loss: float
    accuracy: float
    tokens_per_second: float
    steps: int
    latency_ms: float  # forward time of one task-length sequence after training, no gradients


def lr_factor(step: int, settings: TrainSettings) -> float:
    """Multiplier of the peak lr at `step`: linear warmup, then cosine down to FINAL_LR_FRACTION."""
    warmup = settings.warmup_steps()
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, settings.steps - warmup)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast(device: torch.device | str, settings: TrainSettings):
    """The autocast context of `settings.precision` on `device` (a no-op for fp32)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")


def evaluate(model: torch.nn.Module, task: Task, settings: TrainSettings) -> float:
    """Held-out accuracy: the same batches at every call, from a stream training never sees."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(settings.seed + HELD_OUT_SEED_OFFSET)
    was_training = model.training
    model.eval()
    scores = []
    with torch.no_grad(), autocast(device, settings):
        for _ in range(settings.eval_batches):
            inputs, targets = task.batch(settings.batch_size, generator)
            scores.append(accuracy(model(inputs), targets))
    model.train(was_training)
    return sum(scores) / len(scores)


def measure_latency_ms(model: torch.nn.Module, seq_len: int, settings: TrainSettings = TrainSettings()) -> float:
    """Median forward time of one sequence of `seq_len` tokens, no gradients, at the settings' precision."""
    device = next(model.parameters()).device
    tokens = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    times = []
    with torch.no_grad(), autocast(device, settings):
        for repeat in range(LATENCY_REPEATS + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            begin = time.perf_counter()
            model(tokens)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if repeat:  # the first pass warms caches and allocators
                times.append((time.perf_counter() - begin) * 1e3)
    model.train(was_training)
    return sorted(times)[len(times) // 2]


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("[bold]train[/] {task.fields[name]}"), BarColumn(),
                    TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
                    TimeRemainingColumn(), console=console, disable=console is None, transient=True)


def train(spec: Spec, task: Task, settings: TrainSettings, device: str | None = None,
          console: Console | None = None,
          on_eval: Callable[[int, float], None] | None = None, weights_out: Path | None = None) -> TrainResult:
    """Build `spec`, train it on `task`, return its final loss and held-out accuracy.

    `on_eval(step, accuracy)` is called every `settings.eval_every` steps; a search's pruner
    raises from it to stop a bad trial early. weights_out: a safetensors file the trained weights are
    written to (what `mixc export --weights` and `composer.load_weights` read).
    """
    if task.seq_len > spec.max_len:
        raise ValueError(f"the task's seq_len {task.seq_len} exceeds the spec's max_len {spec.max_len}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)
    model = build(spec, device=device)
    # fused on a GPU: one kernel for every parameter's update, where a small model's step is mostly launches
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay,
                                  fused=torch.device(device).type == "cuda")
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings))
    # batches are drawn where the model runs: on a GPU, a step then waits on no CPU-side sampling (at vocab 8192
    # a mixed MQAR batch of 64 took 22 ms of CPU time, more than a small model's step); the stream is the seed's
    # on each device type, not the same across them
    generator = torch.Generator(device).manual_seed(settings.seed)

    def loss_of(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with autocast(device, settings):
            logits = model(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
    if settings.compile != "none":
        loss_of = torch.compile(loss_of, mode=COMPILE_MODES[settings.compile], dynamic=False)
    loss = torch.tensor(float("nan"))
    start, evaluating_s = time.perf_counter(), 0.0
    with _progress(console) as progress:
        bar = progress.add_task("train", total=settings.steps, name=spec.name, loss=float("nan"))
        for step in range(1, settings.steps + 1):
            inputs, targets = task.batch(settings.batch_size, generator)
            loss = loss_of(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            # loss.item() waits for the GPU, so the bar's loss is read every PROGRESS_EVERY steps only
            fresh = step % PROGRESS_EVERY == 0 or step == settings.steps
            progress.update(bar, advance=1, **({"loss": loss.item()} if fresh else {}))
            if on_eval is not None and settings.eval_every and step % settings.eval_every == 0 \
                    and step < settings.steps:
                evaluation_start = time.perf_counter()
                score = evaluate(model, task, settings)
                evaluating_s += time.perf_counter() - evaluation_start
                on_eval(step, score)
    elapsed = time.perf_counter() - start - evaluating_s  # throughput of training alone
    if weights_out is not None:
        save(model, weights_out, {"spec": spec.name, "steps": str(settings.steps)})
    return TrainResult(loss.item(), evaluate(model, task, settings),
                       settings.steps * settings.batch_size * task.seq_len / elapsed, settings.steps,
                       measure_latency_ms(model, task.seq_len, settings))


def train_mqar(spec: Spec, steps: int = 300, batch_size: int = 64, seq_len: int = 32, pairs: int = 4,
               lr: float = 3e-3, seed: int = 0, device: str | None = None,
               console: Console | None = None, noise: bool = False, precision: str = "fp32",
               weights_out: Path | None = None) -> TrainResult:
    """`mixc train`: MQAR over the model's whole vocabulary, with the search's recipe; gaps hold
    token 0 unless `noise`, which makes the task harder for small models."""
    if seq_len > spec.max_len:
        raise SpecError.single(f"seq_len {seq_len} exceeds the spec's max_len {spec.max_len}")
    try:
        task = MQAR(seq_len=seq_len, pairs=pairs, vocab=spec.vocab, noise=noise)
    except TaskError as exc:
        raise SpecError.single(str(exc), hint=exc.hint) from None
    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, seed=seed, precision=precision)
    return train(spec, task, settings, device=device, console=console, weights_out=weights_out)
