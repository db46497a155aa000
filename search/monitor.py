"""The live view of a running search, read from the study's storage.

It reads the storage rather than listening to workers, so it shows every worker's
trials alike: those of this process, of its worker processes, and of other machines
sharing the study. A thread polls once a second; each finished trial gets one line,
and a status line below them shows progress, the best so far and the time left.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.text import Text

from composer.search.objectives import Objective
from composer.search.periodic import periodically
from composer.search.study import StudyConfig, counted_trials, open_storage

POLL_S = 1.0


def _duration_s(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def outcome_text(trial: FrozenTrial, objectives: tuple[Objective, ...]) -> str:
    """What became of one finished trial, in a line: its measures, or why it stopped."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE:
        measures = "  ".join(f"{o.name} {o.format(v)}" for o, v in zip(objectives, trial.values))
        return f"{measures}  ·  {attrs.get('layers', '')}"
    if "rejected" in attrs:
        return f"rejected: {attrs['rejected']}"
    if trial.state == TrialState.PRUNED:
        step = trial.last_step
        if step is None:
            return "pruned"
        # the pruned trial's last evaluation: its held-out accuracy (search/trial.py reports that), and its layers
        return f"stopped early at step {step}: accuracy {trial.intermediate_values[step]:.3f}  ·  {attrs.get('layers', '')}"
    for key in ("error", "lost"):
        if key in attrs:
            return f"{key}: {attrs[key]}"
    return "interrupted" if attrs.get("interrupted") else trial.state.name.lower()


class Monitor:
    """Polls a study and renders its progress; use `with monitor.live(): ...` around the work."""

    def __init__(self, config: StudyConfig, objectives: tuple[Objective, ...], console: Console, workers: int):
        self.config, self.objectives, self.console, self.workers = config, objectives, console, workers
        self.study = optuna.load_study(study_name=config.study_name, storage=open_storage(config.storage_url))
        self.started = time.monotonic()
        self.reported: set[int] = {t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.status = Text("starting…")
        self.done = self.total = 0

    def poll(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        counted = counted_trials(trials)
        for trial in trials:
            if trial.state.is_finished() and trial.number not in self.reported:
                self.reported.add(trial.number)
                duration = _duration_s(trial)
                took = f" ({duration:.0f} s)" if duration is not None else ""
                self.console.print(f"trial {trial.number:>3}  {trial.state.name.lower():<8}  "
                                   f"{outcome_text(trial, self.objectives)}{took}", markup=False)
        finished = [t for t in counted if t.state.is_finished()]
        running = sum(t.state == TrialState.RUNNING for t in trials)
        self.done, self.total = len(finished), len(counted)
        self.status = Text(f"trial {self.done}/{self.total} · {running} running · {self._best(trials)} · "
                           f"elapsed {_clock(time.monotonic() - self.started)} · {self._eta(finished, running)}")

    def _best(self, trials: list[FrozenTrial]) -> str:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            return "no result yet"
        first = self.objectives[0]
        pick = max if first.direction == "maximize" else min
        best = pick(complete, key=lambda t: t.values[0])
        text = f"best {first.name} {first.format(best.values[0])} (trial {best.number})"
        if len(self.objectives) > 1:
            text += f" · Pareto front {len(self.study.best_trials)}"
        return text

    def _eta(self, finished: list[FrozenTrial], running: int) -> str:
        durations = [d for d in map(_duration_s, finished) if d is not None]
        remaining = self.total - self.done
        if not durations or not remaining:
            return "ETA -"
        parallel = max(1, running, self.workers)
        return f"ETA {_clock(sum(durations) / len(durations) * remaining / parallel)}"

    def __rich__(self) -> Group:
        return Group(ProgressBar(total=max(1, self.total), completed=self.done), self.status)

    @contextmanager
    def live(self) -> Iterator[None]:
        with Live(self, console=self.console, refresh_per_second=2, transient=True):
            with periodically(self.poll, POLL_S, "search-monitor"):
                yield
            self.poll()
        self.console.print(self.status)
