"""`mixc search`: check the spec and its settings, open the study, run workers, report.

    mixc search examples/mqar_search.mix --trials 64 [--workers N] [--storage URL] [--resume]

The steps, in order: load the spec (SpecError: exit 2) and its search settings (also a
SpecError, pointing at the setting's line); create the study, or with --resume load it;
queue trials up to --trials; run the workers (this process, or N worker processes that
each open the storage themselves) under a live view; then report from the storage.
Ctrl-C at any point leaves the study resumable: each worker puts its trial back.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import optuna
import torch
from optuna.trial import TrialState
from rich.console import Console

from composer import SpecError, load
from composer.grammar.parser import parse_file
from composer.search.capacity import auto_workers, trial_bytes
from composer.search.figures import write_figures
from composer.search.monitor import Monitor
from composer.search.report import (front_table, importance_table, importances, outcomes, problems_table,
                                    write_best_specs, write_html)
from composer.search.settings import SearchSettings, SettingsError, read_settings
from composer.search.study import (SharedStudy, StudyConfig, StudyError, counted_trials, create_study,
                                   load_study, storage_faults, storage_url_for)
from composer.search.threads import available_cores, cpu_threads
from composer.search.trial import TrialRunner
from composer.spec import Spec

EXIT_INTERRUPTED = 130
EXIT_WORKER_DIED = 1


@dataclass(frozen=True)
class SearchOptions:
    spec_path: Path
    model: str | None = None
    trials: int | None = None          # None: the spec's `trials` setting
    workers: int | str = 1             # or "auto": search/capacity.py decides
    storage: str | None = None         # None: a SQLite file in `out`
    study_name: str | None = None      # None: the model's name
    out: Path | None = None            # None: <model>.search/ beside the spec
    resume: bool = False
    device: str | None = None          # None: cuda when there is one, else cpu
    heartbeat_s: float = 10.0
    save_weights: bool = False         # each trial's trained weights to OUT/weights, the best beside their specs
    time_limit_s: float | None = None  # no trial starts after this many seconds; the rest stay queued
    report_only: bool = False          # train nothing: the report drawn again from the stored study


@dataclass(frozen=True)
class WorkerJob:
    """What a worker process needs; it loads the spec and opens the storage itself."""

    spec_path: Path
    model: str | None
    config: StudyConfig
    device: str
    threads: int
    weights_dir: Path | None = None
    deadline: float | None = None      # time.monotonic() after which the worker starts no trial


def load_search(spec_path: Path, model: str | None) -> tuple[Spec, SearchSettings]:
    """The spec and its search settings; a bad setting is a SpecError at the setting's line."""
    spec = load(spec_path, model=model)
    try:
        return spec, read_settings(spec)
    except SettingsError as exc:
        raise _located(exc, spec_path, spec.name) from None


def _located(exc: SettingsError, spec_path: Path, model: str) -> SpecError:
    if Path(spec_path).suffix != ".mix":
        where = ".".join(str(p) for p in ("search", "settings") + exc.path)
        return SpecError.single(f"{where}: {exc}", hint=exc.hint)
    source_map = parse_file(spec_path).source_map
    span = source_map.span_at((model, "search", "settings") + exc.path) or source_map.span_at((model, "search"))
    return SpecError.single(str(exc), span, exc.hint, source_map.sources)


def _machine(requested: str | None) -> str:
    """Where the workers train, for the trials-an-hour line."""
    if requested is not None:
        return requested
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} GPU{'s' if count > 1 else ''} ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _device(requested: str | None, worker_index: int) -> str:
    if requested is not None:
        return requested
    if torch.cuda.is_available():
        return f"cuda:{worker_index % torch.cuda.device_count()}"
    return "cpu"


# Modules a Ctrl-C must not land in: a KeyboardInterrupt raised inside a database call can leave its
# connection mid-transaction, holding SQLite's lock against the put-back and the heartbeat that follow.
STORAGE_MODULES = ("sqlalchemy.", "optuna.storages.", "sqlite3", "psycopg2")
REDELIVER_S = 0.05


def _inside_storage(frame) -> bool:
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(STORAGE_MODULES):
            return True
        frame = frame.f_back
    return False


def _interrupt_once(signum, frame) -> None:
    """The first Ctrl-C interrupts; later ones are ignored, so the put-back after it completes. One that
    lands inside a storage call is sent again a moment later, once that call has returned."""
    if _inside_storage(frame):
        threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextmanager
def _interrupt_once_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, _interrupt_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_main(job: WorkerJob, ran=None, stop=None) -> None:
    """A worker process: run the study's waiting trials until none are left; Ctrl-C puts its trial back.
    `ran`, a shared counter, receives how many trials this worker ran. The process starts with SIGINT
    ignored (a Ctrl-C while it imports would print a raw traceback); `stop`, set by the parent when
    interrupted, tells a worker that missed the Ctrl-C so to start no trial."""
    signal.signal(signal.SIGINT, _interrupt_once)
    if stop is not None and stop.is_set():
        return
    torch.set_num_threads(job.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, settings = load_search(job.spec_path, job.model)
    study = load_study(job.config, settings)
    try:
        count = study.run_worker(TrialRunner(spec, settings, job.device, job.weights_dir), job.deadline)
    except KeyboardInterrupt:
        return
    if ran is not None:
        with ran.get_lock():
            ran.value += count


@dataclass(frozen=True)
class WorkersRan:
    """What the workers of this process did: trials run, and the exit codes of workers that died."""

    trials: int
    died: list[tuple[str, int]]


def _weights_dir(spec: Spec, options: SearchOptions) -> Path | None:
    """Where trials write their weights under --save-weights (created here, once)."""
    if not options.save_weights:
        return None
    folder = _out_dir(spec, options) / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _out_dir(spec: Spec, options: SearchOptions) -> Path:
    return options.out or Path(options.spec_path).parent / f"{spec.name}.search"


def _run_workers(study: SharedStudy, spec: Spec, settings: SearchSettings, options: SearchOptions,
                 deadline: float | None = None) -> WorkersRan:
    weights_dir = _weights_dir(spec, options)
    if options.workers == 1:
        runner = TrialRunner(spec, settings, _device(options.device, 0), weights_dir)
        return WorkersRan(study.run_worker(runner, deadline), [])
    threads = cpu_threads(options.workers)
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or DB state
    ran, stop = context.Value("i", 0), context.Event()
    processes = [context.Process(target=worker_main, name=f"search-worker-{i}", args=(WorkerJob(
        options.spec_path, options.model, study.config, _device(options.device, i), threads, weights_dir, deadline),
        ran, stop))
        for i in range(options.workers)]
    # A child inherits an ignored SIGINT through exec, and Python then installs no handler of its own.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the workers too; a SIGINT sent to this process alone does not.
        # Either way each worker puts its trial back (a second SIGINT is ignored) before we go.
        stop.set()
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
        raise
    return WorkersRan(ran.value, [(p.name, p.exitcode) for p in processes if p.exitcode != 0])


def unfinished(study: SharedStudy) -> list[str]:
    """What a dead worker left undone: trials still waiting or running, and lost trials left unretried."""
    left = [f"trial {t.number} {t.state.name.lower()}" for t in study.trials(TrialState.WAITING, TrialState.RUNNING)]
    left += [f"trial {t.number} lost ({t.user_attrs['lost']}) and not retried"
             for t in counted_trials(study.trials()) if "lost" in t.user_attrs]
    return left


def _task_data(settings: SearchSettings) -> dict:
    return {"kind": settings.task.kind, **dataclasses.asdict(settings.task)}


def report(study: SharedStudy, settings: SearchSettings, out: Path, console: Console) -> None:
    """The tables on the console; the HTML page and the best specs under `out`."""
    objectives, summary = settings.objectives, outcomes(study.study)
    console.print(f"study `{study.config.study_name}` in {study.config.storage_url}: {summary}")
    console.print(front_table(study.study, objectives))
    problems = problems_table(study.study, objectives)
    if problems is not None:
        console.print(problems)
    console.print(importance_table(importances(study.study, objectives)))
    write_html(study.study, objectives, out / "report.html", summary)
    console.print(f"wrote {out / 'report.html'}")
    for path in write_best_specs(study.study, objectives, _task_data(settings), out / "best"):
        console.print(f"wrote {path}")
    figures, missing = write_figures(study.study, objectives, out)
    for path in figures:
        console.print(f"wrote {path}")
    if missing:
        console.print(missing)


def _resume_flags(options: SearchOptions) -> str:
    flags = [("--model", options.model), ("--storage", options.storage), ("--study", options.study_name),
             ("--out", options.out if not options.storage else None)]
    return "".join(f" {flag} {value}" for flag, value in flags if value is not None)


def _out_and_config(spec: Spec, options: SearchOptions) -> tuple[Path, StudyConfig]:
    out = _out_dir(spec, options)
    config = StudyConfig(storage_url_for(options.storage or str(out / "study.db")),
                         options.study_name or spec.name, options.heartbeat_s)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return out, config


def _report_only(spec: Spec, settings: SearchSettings, options: SearchOptions, console: Console) -> int:
    """The report of the stored study as it stands (a search cut short, or one finished elsewhere): nothing
    is queued or trained, and trials still queued stay so for --resume."""
    out, config = _out_and_config(spec, options)
    stored = config.storage_url.removeprefix("sqlite:///") if config.storage_url.startswith("sqlite:///") else None
    if stored is not None and not Path(stored).is_file():  # opening it would create an empty one
        raise StudyError(f"no stored study at {stored}: --report-only draws the report of a search that ran; "
                         "point --out (or --storage) at that search's folder")
    study = load_study(config, settings)
    with storage_faults(config.storage_url):
        report(study, settings, out, console)
    return 0


def run_search(options: SearchOptions, console: Console) -> int:
    """The whole command; returns its exit code (SpecError and StudyError go up to the CLI)."""
    if options.workers != "auto" and options.workers < 1:
        raise StudyError(f"--workers must be at least 1, got {options.workers}")
    if options.time_limit_s is not None and options.time_limit_s <= 0:
        raise StudyError(f"--time-limit must be a number of seconds above 0, got {options.time_limit_s:g}")
    spec, settings = load_search(options.spec_path, options.model)
    if options.report_only:
        return _report_only(spec, settings, options, console)
    if options.workers == "auto":
        on_gpu = torch.cuda.is_available() and (options.device or "cuda").startswith("cuda")
        free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())] if on_gpu else []
        count, why = auto_workers(trial_bytes(spec, settings), free, available_cores())
        console.print(f"--workers auto: {why}")
        options = dataclasses.replace(options, workers=count)
    out, config = _out_and_config(spec, options)
    study = load_study(config, settings) if options.resume else create_study(config, settings)
    target = options.trials or study.target or settings.trials
    with storage_faults(config.storage_url):
        added = study.fill_queue(target)
    console.print(f"study `{config.study_name}` in {config.storage_url}: {target} trials"
                  f" ({added} queued now), objectives {', '.join(o.name for o in settings.objectives)}, "
                  f"{options.workers} worker{'s' if options.workers > 1 else ''}")
    if spec.search is None or not spec.search.space:
        console.print("note: the spec's search section names no holes: every trial trains the same model")
    monitor = Monitor(config, settings.objectives, console, options.workers)
    started = time.monotonic()
    # monotonic: a wall clock that stalls or is set back let a trial start past a 1 ms limit; the
    # workers are this machine's processes, which share CLOCK_MONOTONIC
    deadline = None if options.time_limit_s is None else time.monotonic() + options.time_limit_s
    try:
        with _interrupt_once_handler(), monitor.live(), storage_faults(config.storage_url):
            workers_ran = _run_workers(study, spec, settings, options, deadline)
    except KeyboardInterrupt:
        console.print(f"interrupted: {outcomes(study.study)}; the study is saved in {config.storage_url}.\n"
                      f"Continue it with: mixc search {options.spec_path} --resume" + _resume_flags(options))
        return EXIT_INTERRUPTED
    elapsed = time.monotonic() - started
    console.print(f"this run's workers ran {workers_ran.trials} trial{'s' if workers_ran.trials != 1 else ''} in "
                  f"{elapsed:.0f} s: {workers_ran.trials * 3600 / max(elapsed, 1e-9):.0f} trials an hour with "
                  f"{options.workers} worker{'s' if options.workers > 1 else ''} on {_machine(options.device)}"
                  + (" (rejected and pruned trials count)" if workers_ran.trials else ""))
    if workers_ran.died:
        died = ", ".join(f"{name} (exit code {code})" for name, code in workers_ran.died)
        left = unfinished(study)
        if left:
            console.print(f"error: worker{'s' if len(workers_ran.died) > 1 else ''} {died} died, leaving "
                          f"{'; '.join(left)}.\nContinue the study with: mixc search {options.spec_path} --resume"
                          + _resume_flags(options))
            return EXIT_WORKER_DIED
        console.print(f"warning: {died} died; its trial was retried and finished by another worker")
    queued = study.trials(TrialState.WAITING) if deadline is not None else []
    if queued:
        console.print(f"time limit: {len(queued)} trial{'s' if len(queued) > 1 else ''} still queued after "
                      f"{options.time_limit_s:g} s. Continue the study with: mixc search {options.spec_path} "
                      f"--resume" + _resume_flags(options))
    with storage_faults(config.storage_url):
        report(study, settings, out, console)
    return 0
