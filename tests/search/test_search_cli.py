"""`mixc search` as a person runs it: report, best specs, Ctrl-C and --resume."""

import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

import composer
from composer.cli import main
from composer.search.study import counted_trials
from search_specs import trained, write_spec


def test_search_prints_the_front_and_writes_the_report_and_best_specs(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=4))
    assert main(["search", str(spec), "--trials", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 complete" in out and "Pareto front of study `tiny`" in out
    assert "hole importances" in out
    assert len(re.findall(r"^trial +\d+ +complete", out, re.M)) == 4  # one live line a trial

    html = (tmp_path / "tiny.search" / "report.html").read_text()
    assert html.count("* plotly.js v") == 1 and "<script src=" not in html  # inlined once: works offline
    for title in ("Pareto front", "optimisation history: accuracy", "hole importances: accuracy",
                  "parallel coordinates: state_bytes"):
        assert f"<h2>{title}</h2><div style=" in html  # a figure, not "not available"

    for name in ("recall.csv", "recall_vs_attention.png", "recall_vs_state.png"):  # the known-results figures
        assert f"wrote {tmp_path / 'tiny.search' / name}" in out.replace("\n", "")
    best = sorted((tmp_path / "tiny.search" / "best").glob("*.mix"))
    assert best
    for path in best:
        written = composer.load(path)
        assert written.search is None and written.name.startswith("tiny_trial")
        assert "# trial" in path.read_text() and "trained on mqar(" in path.read_text()


def test_second_start_of_the_same_study_needs_resume(tmp_path, capsys):
    spec = write_spec(tmp_path)
    assert main(["search", str(spec), "--trials", "2"]) == 0
    assert main(["search", str(spec), "--trials", "2"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["search", str(spec), "--trials", "3", "--resume"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.search' / 'study.db'}")
    assert len(study.trials) == 3


def _wait_for(predicate, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sigint_leaves_a_resumable_study_and_resume_repeats_no_completed_trial(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=250))  # trials of a few seconds: the signal lands inside one
    storage = f"sqlite:///{tmp_path / 'tiny.search' / 'study.db'}"
    log = tmp_path / "search.log"  # a file, not a pipe: unread, a pipe's 64 KB would stall the search
    with open(log, "w") as out:  # the child keeps its own descriptor
        process = subprocess.Popen([sys.executable, "-m", "composer.cli", "search", str(spec), "--trials", "3"],
                                   stdout=out, stderr=subprocess.STDOUT, text=True)

    def one_done_and_one_running():
        try:  # only reading: a poll that created the tables itself would race the search creating them
            reader = optuna.storages.RDBStorage(storage, skip_table_creation=True, skip_compatibility_check=True)
            trials = optuna.load_study(study_name="tiny", storage=reader).trials
        except (KeyError, Exception):
            return False
        states = [t.state for t in trials]
        return TrialState.COMPLETE in states and TrialState.RUNNING in states

    _wait_for(lambda: one_done_and_one_running() or process.poll() is not None)
    assert process.poll() is None, "the search ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode == 130, output
    assert "--resume" in output

    before = optuna.load_study(study_name="tiny", storage=storage).trials
    completed = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    interrupted = [t for t in before if t.user_attrs.get("interrupted")]
    assert len(interrupted) == 1 and interrupted[0].state == TrialState.FAIL

    assert main(["search", str(spec), "--resume"]) == 0  # no --trials: the stored count, 3
    after = optuna.load_study(study_name="tiny", storage=storage).trials
    counted = counted_trials(after)
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    assert {t.number: t.values for t in after if t.number in completed} == completed
    assert len(after) == 4  # the three counted, and the interrupted one its retry replaced


def _frame_in(module: str):
    """A frame whose code runs in a module of that name."""
    namespace = {"__name__": module, "sys": sys}
    exec("def here():\n    return sys._getframe()\n", namespace)
    return namespace["here"]()


def test_ctrl_c_inside_a_storage_call_is_delivered_again_after_it():
    from composer.search.run import _interrupt_once
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        try:
            _interrupt_once(signal.SIGINT, _frame_in("sqlalchemy.engine.default"))  # deferred: returns, no raise
        except KeyboardInterrupt:
            pytest.fail("a Ctrl-C inside a storage call was raised there")
        _wait_for(lambda: received == [signal.SIGINT], timeout_s=5)
        with pytest.raises(KeyboardInterrupt):  # anywhere else it interrupts at once, and only once
            _interrupt_once(signal.SIGINT, _frame_in("composer.search.train"))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_save_weights_writes_each_best_specs_weights_beside_it(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=2))
    assert main(["search", str(spec), "--trials", "2", "--save-weights"]) == 0
    out = tmp_path / "tiny.search"
    assert len(list((out / "weights").glob("trial*.safetensors"))) == 2
    best = sorted((out / "best").glob("*.mix"))
    assert best
    for path in best:
        model = composer.build(composer.load(path))
        composer.load_weights(model, path.with_suffix(".safetensors"))  # names and shapes fit that spec


def test_a_time_limit_starts_no_trial_after_it_keeps_the_rest_queued_and_resume_runs_them(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=2))
    assert main(["search", str(spec), "--trials", "3", "--time-limit", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "time limit: 3 trials still queued after 0.001 s" in out and "--resume" in out
    assert "this run's workers ran 0 trials" in out
    assert main(["search", str(spec), "--resume"]) == 0
    assert "3 complete" in capsys.readouterr().out
    assert main(["search", str(spec), "--trials", "4", "--time-limit", "0"]) == 2  # a StudyError, said plainly
    assert "--time-limit must be a number of seconds above 0, got 0" in capsys.readouterr().err


def test_report_only_redraws_the_report_from_storage_and_trains_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path, trained(steps=2))
    assert main(["search", str(spec), "--report-only"]) == 2  # nothing stored yet: said plainly, no file made
    assert "no stored study at" in capsys.readouterr().err and not (tmp_path / "tiny.search").exists()
    assert main(["search", str(spec), "--trials", "2"]) == 0
    assert main(["search", str(spec), "--resume", "--trials", "4", "--time-limit", "0.001"]) == 0  # 2 more queued
    out_dir = tmp_path / "tiny.search"
    for name in ("report.html", "recall.csv"):
        (out_dir / name).unlink()
    storage = f"sqlite:///{out_dir / 'study.db'}"
    before = [(t.number, t.state) for t in optuna.load_study(study_name="tiny", storage=storage).trials]
    capsys.readouterr()
    assert main(["search", str(spec), "--report-only"]) == 0
    out = capsys.readouterr().out
    assert "this run's workers" not in out and f"wrote {out_dir / 'report.html'}" in out.replace("\n", "")
    assert (out_dir / "report.html").stat().st_size > 0 and (out_dir / "recall.csv").is_file()
    assert [(t.number, t.state) for t in optuna.load_study(study_name="tiny", storage=storage).trials] == before
    assert [state for _, state in before] == [TrialState.COMPLETE] * 2 + [TrialState.WAITING] * 2  # still queued
