"""Train a built model on a synthetic task and report accuracy on a held-out split."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from composer import build
from composer.search.tasks import IGNORE, MQAR, accuracy
from composer.spec import Spec


@dataclass(frozen=True)
class TrainResult:
    loss: float
    accuracy: float
    tokens_per_second: float
    steps: int


def evaluate(model: torch.nn.Module, task: MQAR, batches: int, batch_size: int, seed: int) -> float:
    """Held-out accuracy: its own seed stream, never seen in training."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    model.eval()
    scores = []
    with torch.no_grad():
        for _ in range(batches):
            inputs, targets = task.batch(batch_size, generator)
            device = next(model.parameters()).device
            scores.append(accuracy(model(inputs.to(device)), targets.to(device)))
    model.train()
    return sum(scores) / len(scores)


def train_mqar(spec: Spec, steps: int = 300, batch_size: int = 32, seq_len: int = 64, pairs: int = 8,
               lr: float = 3e-3, seed: int = 0, device: str | None = None,
               console: Console | None = None) -> TrainResult:
    if seq_len > spec.max_len:
        raise ValueError(f"seq_len {seq_len} exceeds the spec's max_len {spec.max_len}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    task = MQAR(seq_len=seq_len, pairs=pairs, vocab=spec.vocab)
    model = build(spec, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    start = time.perf_counter()
    progress = Progress(TextColumn("[bold]train[/] {task.fields[name]}"), BarColumn(),
                        TextColumn("step {task.completed}/{task.total} loss {task.fields[loss]:.3f}"),
                        TimeRemainingColumn(), console=console, disable=console is None, transient=True)
    with progress:
        bar = progress.add_task("train", total=steps, name=spec.name, loss=float("nan"))
        for _ in range(steps):
            inputs, targets = (t.to(device) for t in task.batch(batch_size, generator))
            logits = model(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            progress.update(bar, advance=1, loss=loss.item())
    elapsed = time.perf_counter() - start
    return TrainResult(loss.item(), evaluate(model, task, 4, batch_size, seed),
                       steps * batch_size * seq_len / elapsed, steps)
