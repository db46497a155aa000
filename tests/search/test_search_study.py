"""The shared study: exact trial counts, determinism, and recovery from Ctrl-C, crashes and lost workers."""

import time

import pytest
from optuna.trial import TrialState

import composer
from composer.search.settings import read_settings
from composer.search.study import (HEARTBEAT_ATTR, StudyConfig, StudyError, counted_trials, create_study,
                                   load_study, storage_url_for)
from composer.search.trial import TrialRunner
from search_specs import TINY_SPEC, PLANNED, trained

SPEC = composer.loads(TINY_SPEC.format(settings=PLANNED))
SETTINGS = read_settings(SPEC)


def _config(tmp_path, name="tiny", heartbeat_s=10.0, storage=None):
    return StudyConfig(storage_url_for(storage or str(tmp_path / "study.db")), name, heartbeat_s)


def _states(study):
    return sorted(t.state.name for t in study.trials())


def test_same_seed_and_storage_give_the_same_trial_sequence(tmp_path):
    sequences = []
    for run in ("first", "second"):
        study = create_study(_config(tmp_path / run), SETTINGS)
        study.fill_queue(8)
        study.run_worker(TrialRunner(SPEC, SETTINGS, "cpu"))
        sequences.append([t.params for t in study.trials()])
    assert sequences[0] == sequences[1]
    assert len({repr(p) for p in sequences[0]}) > 1  # the sampler did vary the points


def test_another_seed_gives_another_sequence(tmp_path):
    other = read_settings(composer.loads(TINY_SPEC.format(settings=PLANNED + "\n    seed = 1")))
    params = []
    for run, settings in (("a", SETTINGS), ("b", other)):
        study = create_study(_config(tmp_path / run), settings)
        study.fill_queue(3)
        study.run_worker(TrialRunner(SPEC, settings, "cpu"))
        params.append([t.params for t in study.trials()])
    assert params[0] != params[1]


def test_queue_runs_exactly_the_requested_trials_and_tops_up_on_resume(tmp_path):
    study = create_study(_config(tmp_path), SETTINGS)
    assert study.fill_queue(3) == 3
    assert study.run_worker(TrialRunner(SPEC, SETTINGS, "cpu")) == 3
    again = load_study(_config(tmp_path), SETTINGS)
    assert again.target == 3 and again.fill_queue(3) == 0
    assert again.fill_queue(5) == 2 and again.target == 5
    again.run_worker(TrialRunner(SPEC, SETTINGS, "cpu"))
    assert _states(again) == ["COMPLETE"] * 5


class InterruptOnce:
    """A trial function that raises KeyboardInterrupt (a Ctrl-C) in the trial numbered `at`, once,
    after its point is suggested, as a Ctrl-C during training would."""

    def __init__(self, runner, at):
        self.runner, self.at, self.fired = runner, at, False

    def __call__(self, trial):
        if trial.number == self.at and not self.fired:
            self.fired = True
            self.runner.space.suggest(trial)
            raise KeyboardInterrupt
        return self.runner(trial)


def test_ctrl_c_puts_the_trial_back_and_resume_finishes_without_repeating(tmp_path):
    study = create_study(_config(tmp_path), SETTINGS)
    study.fill_queue(4)
    objective = InterruptOnce(TrialRunner(SPEC, SETTINGS, "cpu"), at=2)
    with pytest.raises(KeyboardInterrupt):
        study.run_worker(objective)
    interrupted = study.trials()[2]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["interrupted"]
    done_before = {t.number: t.values for t in study.trials(TrialState.COMPLETE)}
    assert sorted(done_before) == [0, 1]

    resumed = load_study(_config(tmp_path), SETTINGS)
    assert resumed.fill_queue(resumed.target) == 0  # the retry already holds the interrupted trial's place
    resumed.run_worker(objective)
    trials = resumed.trials()
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 2)
    assert retry.state == TrialState.COMPLETE and retry.params == interrupted.params
    assert len(counted_trials(trials)) == 4 and len(trials) == 5
    assert [t.state for t in counted_trials(trials)] == [TrialState.COMPLETE] * 4
    assert {t.number: t.values for t in trials if t.number in done_before} == done_before


def test_a_crash_in_one_trial_is_recorded_and_the_study_goes_on(tmp_path):
    study = create_study(_config(tmp_path), SETTINGS)
    study.fill_queue(3)
    runner = TrialRunner(SPEC, SETTINGS, "cpu")

    def crash_in_trial_1(trial):
        if trial.number == 1:
            raise RuntimeError("out of memory")
        return runner(trial)

    assert study.run_worker(crash_in_trial_1) == 3
    assert _states(study) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert study.trials()[1].user_attrs["error"] == "RuntimeError: out of memory"
    assert study.fill_queue(3) == 0  # a crash counts: the same parameters would crash again


def test_a_trial_whose_heartbeat_stopped_is_failed_and_retried_with_its_params(tmp_path):
    study = create_study(_config(tmp_path, heartbeat_s=1.0), SETTINGS)
    study.fill_queue(1)
    orphan = study.take_waiting("a worker that was killed")
    suggested = TrialRunner(SPEC, SETTINGS, "cpu").space.suggest(orphan)
    study.storage.set_trial_system_attr(orphan._trial_id, HEARTBEAT_ATTR, time.time() - 60)
    assert study.requeue_lost() == [orphan.number]
    lost = study.trials()[orphan.number]
    assert lost.state == TrialState.FAIL and "no heartbeat" in lost.user_attrs["lost"]
    retry = study.trials(TrialState.WAITING)[0]
    assert retry.user_attrs == {"retry_of": orphan.number, "retries": 1}
    study.run_worker(TrialRunner(SPEC, SETTINGS, "cpu"))
    assert study.trials()[retry.number].params == suggested
    assert [t.state for t in counted_trials(study.trials())] == [TrialState.COMPLETE]


def test_a_live_trial_is_left_alone(tmp_path):
    study = create_study(_config(tmp_path, heartbeat_s=30.0), SETTINGS)
    study.fill_queue(1)
    study.take_waiting("a busy worker")
    assert study.requeue_lost() == []


def test_pruning_stops_a_single_objective_trial_below_the_median(tmp_path):
    spec = composer.loads(TINY_SPEC.format(settings=trained(steps=8).replace(
        "objectives = [accuracy, state_bytes]", "objectives = [accuracy]") + "\n    eval_every = 2"))
    settings = read_settings(spec)
    assert settings.prunes
    study = create_study(_config(tmp_path), settings)
    study.fill_queue(2)
    study.run_worker(TrialRunner(spec, settings, "cpu"))
    reported = [t.intermediate_values for t in study.trials()]
    assert all(sorted(values) == [2, 4, 6] for values in reported)  # intermediate scores reached optuna


def test_the_queue_lock_of_a_journal_is_not_optuna_s_own(tmp_path):
    """optuna's journal backend locks PATH.lock (a file that exists while held); a queue lock on that name made
    every journal write wait 30 s for optuna to call it stale (two trials took 90 s)."""
    from composer.search.locks import study_lock
    journal = tmp_path / "study.log"
    held = study_lock(f"journal:{journal}", None, "tiny")
    with held():
        assert not (tmp_path / "study.log.lock").exists()


def test_journal_storage_holds_a_study_too(tmp_path):
    config = _config(tmp_path, storage=f"journal:{tmp_path / 'study.log'}")
    study = create_study(config, SETTINGS)
    study.fill_queue(2)
    study.run_worker(TrialRunner(SPEC, SETTINGS, "cpu"))
    assert _states(load_study(config, SETTINGS)) == ["COMPLETE", "COMPLETE"]


def test_creating_an_existing_study_or_resuming_a_missing_one_says_what_to_do(tmp_path):
    create_study(_config(tmp_path), SETTINGS)
    with pytest.raises(StudyError, match="pass --resume"):
        create_study(_config(tmp_path), SETTINGS)
    with pytest.raises(StudyError, match="run without --resume"):
        load_study(_config(tmp_path, name="other"), SETTINGS)
    changed = read_settings(composer.loads(TINY_SPEC.format(settings=PLANNED.replace("params, ", ""))))
    with pytest.raises(StudyError, match="now asks for"):
        load_study(_config(tmp_path), changed)
