"""Several `mixc search --resume --trials N` processes on one study fill it exactly once and claim no trial twice."""

import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

import composer
from composer.search.run import SearchOptions, WorkersRan, run_search
from composer.search.settings import read_settings
from composer.search.study import StudyConfig, counted_trials, create_study, storage_url_for
from rich.console import Console
from search_specs import write_spec

TRIALS = 12


def start_workers(spec: Path, url: str, count: int = 2) -> list[subprocess.Popen]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-m", "composer.cli", "search", str(spec), "--resume",
                              "--trials", str(TRIALS), "--storage", url, "--heartbeat", "1"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(count)]


def assert_filled_once(spec: Path, url: str) -> None:
    """Two processes started at once on a created, empty study: N trials, each run by one of them."""
    create_study(StudyConfig(url, "tiny"), read_settings(composer.load(spec)))
    processes = start_workers(spec, url)
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    ran = [int(re.search(r"workers ran (\d+) trial", output).group(1)) for output in outputs]
    assert sum(ran) == TRIALS, outputs  # a trial claimed by both would count twice here
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(trials) == TRIALS and len(counted_trials(trials)) == TRIALS
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_two_processes_fill_one_sqlite_study_exactly_once(tmp_path):
    spec = write_spec(tmp_path)
    assert_filled_once(spec, storage_url_for(str(tmp_path / "shared.db")))


def _options(spec: Path, tmp_path: Path) -> SearchOptions:
    return SearchOptions(spec_path=spec, trials=2, workers=2, out=tmp_path / "out")


def test_a_dead_worker_whose_trial_is_left_running_fails_the_run(tmp_path, monkeypatch):
    spec = write_spec(tmp_path)

    def one_dies(study, *args):
        claimed = study.take_waiting("doomed:1")  # claimed, then never finished: its worker died
        assert claimed is not None
        return WorkersRan(0, [("search-worker-1", -9)])

    monkeypatch.setattr("composer.search.run._run_workers", one_dies)
    console = Console(record=True, width=200)
    assert run_search(_options(spec, tmp_path), console) == 1
    text = console.export_text()
    assert "search-worker-1 (exit code -9) died" in text and "running" in text and "--resume" in text


def test_a_dead_worker_whose_trial_was_finished_by_another_still_succeeds(tmp_path, monkeypatch):
    spec = write_spec(tmp_path)
    from composer.search.trial import TrialRunner

    def one_dies_others_finish(study, spec_, settings, options, deadline=None):
        ran = study.run_worker(TrialRunner(spec_, settings, "cpu"))
        return WorkersRan(ran, [("search-worker-1", -9)])

    monkeypatch.setattr("composer.search.run._run_workers", one_dies_others_finish)
    console = Console(record=True, width=200)
    assert run_search(_options(spec, tmp_path), console) == 0
    assert "warning: search-worker-1 (exit code -9) died" in console.export_text()
