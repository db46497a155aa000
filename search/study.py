"""The Optuna study: storage, sampler, pruner, and a queue of trials that workers share.

The study lives in its storage, never in a process: a SQLite file by default, any
Optuna RDB URL (PostgreSQL, MySQL) or a journal file (`journal:PATH`) for many workers.
`--trials N` puts N waiting trials in the study; every worker, in this process or
another on any machine, takes waiting trials one at a time until none are left. Filling,
claiming and failing a lost trial each run under the study's lock (search/locks.py: a lock
file beside a SQLite or journal file, an advisory lock on PostgreSQL), so two workers never
claim one trial and two fills never over-fill: the count is exact however many workers
there are, and nothing but the storage coordinates them. A trial, once finished, is never
written again: a worker whose trial another declared lost drops its result.

A trial whose worker stops mid-way is put back: a running worker writes a heartbeat
into the trial every `heartbeat_s` seconds; any worker that sees a running trial
without one for `grace_s` marks it failed (`lost`) and queues a retry with the same
parameters (`retry_of`). Ctrl-C does the same for the worker's own trial at once
(`interrupted`). A trial that raises is failed with the error kept (`error`) and not
retried: the same parameters would raise again. So every queued trial ends, once, as
complete, pruned or failed, and a retry replaces the trial it retries in the count.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from composer.search.locks import study_lock
from composer.search.periodic import periodically
from composer.search.settings import SearchSettings

HEARTBEAT_ATTR = "composer:heartbeat"
# A trial lost this many times (its worker killed each time) is left failed rather than tried again.
MAX_RETRIES = 3
# How often an idle worker looks for work or for lost trials while others run.
POLL_S = 0.5


class StudyError(Exception):
    """A study that cannot be created, found or continued as asked; the message says what to do."""


@dataclass(frozen=True)
class StudyConfig:
    """Where a study lives and how its workers keep in touch: all a worker process needs."""

    storage_url: str
    study_name: str
    heartbeat_s: float = 10.0

    @property
    def grace_s(self) -> float:
        """Silence after which a running trial counts as lost: three missed heartbeats."""
        return 3 * self.heartbeat_s


def storage_url_for(path_or_url: str) -> str:
    """A bare file path is a SQLite file; URLs (sqlite:///, postgresql://, journal:PATH) pass as they are."""
    if "://" in path_or_url or path_or_url.startswith("journal:"):
        return path_or_url
    return f"sqlite:///{Path(path_or_url).resolve()}"


def open_storage(url: str) -> BaseStorage:
    if url.startswith("journal:"):
        path = url.removeprefix("journal:").removeprefix("//")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes write one file: wait for its lock instead of failing at once.
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})  # a server may drop idle connections


def make_sampler(settings: SearchSettings, trial_number: int) -> optuna.samplers.BaseSampler:
    """A sampler seeded by (seed, trial number): trial n draws the same whichever worker runs it."""
    seed = (settings.train.seed * 1_000_003 + trial_number) % 2**32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if settings.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=settings.population, seed=seed)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    if not settings.prunes:
        return optuna.pruners.NopPruner()
    steps = settings.train.steps
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.train.eval_every), max_resource=steps)
    # Recall tasks learn in sudden jumps after a plateau: judge no trial in its first half.
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=steps // 2)


def _fault(exc: BaseException) -> str:
    """A storage failure in a line: the database's own words, not the SQL or a traceback."""
    reason = getattr(exc, "orig", None) or exc
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    return text[:200]


@contextmanager
def storage_faults(url: str) -> Iterator[None]:
    """A storage that cannot be opened, read or written (a corrupt file, a read-only folder, a full disk,
    an unreachable server) as a StudyError naming it."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError, OSError) as exc:
        raise StudyError(f"cannot use the study storage {url}: {_fault(exc)}; check that it is a study database "
                         "you can read and write (a SQLite file, a reachable server, a folder with room)") from None


def create_study(config: StudyConfig, settings: SearchSettings) -> "SharedStudy":
    with storage_faults(config.storage_url):
        return _create_study(config, settings)


def load_study(config: StudyConfig, settings: SearchSettings) -> "SharedStudy":
    with storage_faults(config.storage_url):
        return _load_study(config, settings)


def _create_study(config: StudyConfig, settings: SearchSettings) -> "SharedStudy":
    storage = open_storage(config.storage_url)
    try:
        study = optuna.create_study(storage=storage, study_name=config.study_name,
                                    directions=[o.direction for o in settings.objectives],
                                    sampler=make_sampler(settings, 0), pruner=make_pruner(settings))
    except DuplicatedStudyError:
        raise StudyError(f"study `{config.study_name}` already exists in {config.storage_url}: pass --resume "
                         "to continue it (or join it from another worker), or --study NAME for a new one") from None
    study.set_user_attr("objectives", [o.name for o in settings.objectives])
    return SharedStudy(study, storage, config, settings)


def _load_study(config: StudyConfig, settings: SearchSettings) -> "SharedStudy":
    storage = open_storage(config.storage_url)
    try:
        study = optuna.load_study(study_name=config.study_name, storage=storage,
                                  sampler=make_sampler(settings, 0), pruner=make_pruner(settings))
    except KeyError:
        raise StudyError(f"no study `{config.study_name}` in {config.storage_url} to resume: "
                         "run without --resume to start it") from None
    written = study.user_attrs.get("objectives")
    wanted = [o.name for o in settings.objectives]
    if written != wanted:
        raise StudyError(f"study `{config.study_name}` optimises {written}, but the spec now asks for {wanted}: "
                         "use --study NAME for a new study")
    return SharedStudy(study, storage, config, settings)


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count towards --trials: all but those a retry has replaced."""
    replaced = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return [t for t in trials if t.number not in replaced]


@contextmanager
def heartbeat(storage: BaseStorage, trial_id: int, interval_s: float) -> Iterator[None]:
    """Write the time into the trial every `interval_s` seconds while the block runs."""

    def beat() -> bool:
        try:
            storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            return False  # declared lost by another worker: nothing left to keep alive
        return True

    with periodically(beat, interval_s, f"heartbeat-{trial_id}"):
        yield


class SharedStudy:
    """A study as its workers share it: the queue, lost-trial recovery and the worker loop."""

    def __init__(self, study: optuna.Study, storage: BaseStorage, config: StudyConfig, settings: SearchSettings):
        self.study, self.storage, self.config, self.settings = study, storage, config, settings
        self.locked = study_lock(config.storage_url, storage, config.study_name)

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    @property
    def target(self) -> int | None:
        """The trial count last asked for, kept in the study so --resume alone knows it."""
        return self.study.user_attrs.get("trials")

    def fill_queue(self, target: int) -> int:
        """Queue waiting trials until `target` count; returns how many were added."""
        with self.locked():
            if self.target is None or target > self.target:
                self.study.set_user_attr("trials", target)
            missing = target - len(counted_trials(self.trials()))
            for _ in range(missing):
                self.study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
        return max(0, missing)

    def _queue_retry(self, trial: FrozenTrial, retries: int) -> None:
        """A waiting copy of `trial` with its parameters, which the sampler then keeps."""
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs={"retry_of": trial.number, "retries": retries}))

    def requeue_lost(self) -> list[int]:
        """Fail running trials whose heartbeat stopped and queue their retries; returns their numbers."""
        with self.locked():
            return self._requeue_lost()

    def _requeue_lost(self) -> list[int]:
        lost, now = [], time.time()
        for trial in self.trials(TrialState.RUNNING):
            last = trial.system_attrs.get(HEARTBEAT_ATTR) or trial.datetime_start.timestamp()
            if now - last <= self.config.grace_s:
                continue
            try:
                self.storage.set_trial_user_attr(trial._trial_id, "lost", f"no heartbeat for {now - last:.0f} s")
                if not self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    continue
            except UpdateFinishedTrialError:
                continue  # it finished meanwhile, or another worker got there first
            retries = trial.user_attrs.get("retries", 0) + 1
            if retries <= MAX_RETRIES:
                self._queue_retry(trial, retries)
            lost.append(trial.number)
        return lost

    def take_waiting(self, worker: str) -> optuna.Trial | None:
        """Claim one waiting trial for this worker, or None when the queue is empty."""
        with self.locked():
            return self._take_waiting(worker)

    def _take_waiting(self, worker: str) -> optuna.Trial | None:
        for waiting in self.trials(TrialState.WAITING):
            try:
                if not self.storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                    continue  # another worker took it first
            except UpdateFinishedTrialError:
                continue
            self.storage.set_trial_system_attr(waiting._trial_id, HEARTBEAT_ATTR, time.time())
            self.storage.set_trial_user_attr(waiting._trial_id, "worker", worker)
            self.study.sampler = make_sampler(self.settings, waiting.number)
            return optuna.Trial(self.study, waiting._trial_id)
        return None

    def _tell(self, trial: optuna.Trial, values=None, state=None) -> None:
        try:
            self.study.tell(trial, values, state=state)
        except UpdateFinishedTrialError:
            pass  # another worker declared this trial lost and queued its retry: that one counts

    def run_trial(self, trial: optuna.Trial, objective: Callable[[optuna.Trial], list[float]]) -> None:
        """Run one claimed trial to its end state; Ctrl-C queues its retry, then goes on up."""
        trial_id = trial._trial_id
        with heartbeat(self.storage, trial_id, self.config.heartbeat_s):
            try:
                values = objective(trial)
            except optuna.TrialPruned:
                self._tell(trial, state=TrialState.PRUNED)
            except KeyboardInterrupt:
                with self.locked():
                    try:
                        self.storage.set_trial_user_attr(trial_id, "interrupted", True)
                        self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                    except UpdateFinishedTrialError:
                        raise KeyboardInterrupt from None  # declared lost already: its retry is queued
                    frozen = self.storage.get_trial(trial_id)
                    self._queue_retry(frozen, frozen.user_attrs.get("retries", 0))
                raise
            except UpdateFinishedTrialError:
                pass  # declared lost mid-way (a report or attribute write refused): its retry counts
            except Exception as exc:  # a crash in one trial must not end the study
                try:
                    self.storage.set_trial_user_attr(trial_id, "error", f"{type(exc).__name__}: {exc}")
                except UpdateFinishedTrialError:
                    return
                self._tell(trial, state=TrialState.FAIL)
            else:
                self._tell(trial, values)

    def run_worker(self, objective: Callable[[optuna.Trial], list[float]], deadline: float | None = None) -> int:
        """Run waiting trials until none are waiting or running, or (`deadline`, a time.monotonic()) until the
        deadline has passed, which starts no further trial; returns how many this worker ran."""
        worker, ran = f"{socket.gethostname()}:{os.getpid()}", 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return ran  # the queued trials stay queued for a --resume
            self.requeue_lost()
            trial = self.take_waiting(worker)
            if trial is not None:
                self.run_trial(trial, objective)
                ran += 1
            elif self.trials(TrialState.RUNNING):
                time.sleep(POLL_S)  # others still run: one of them may be lost and come back to the queue
            else:
                return ran
