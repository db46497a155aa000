"""The known-results figures: recall.csv's rows are the trials' own (attention fraction from the layers, the
state hole's value, accuracy), and the two PNGs are drawn from them."""

import csv

import optuna

import composer
from composer.search.figures import attention_fraction, recall_points, write_figures
from composer.search.monitor import outcome_text
from search_specs import TINY_SPEC, PLANNED, run_study, trained


def test_attention_fraction_counts_attention_layers():
    spec = composer.loads(TINY_SPEC.format(settings=PLANNED))
    assert attention_fraction(spec) == 0.5  # ratio 1 : 1 over 2 layers
    text = TINY_SPEC.format(settings=PLANNED)
    listed = composer.loads(text[:text.index("  search {")].replace(
        "ratio(attn : ssd = 1 : 1, placement = interleaved) * 2", "[ssd, ssd, ssd, attn]") + "}")
    assert attention_fraction(listed) == 0.25


def test_recall_rows_are_the_trials_own_and_the_pngs_are_drawn(tmp_path):
    study, settings = run_study(tmp_path, trained(steps=2), trials=5)
    points = recall_points(study, settings.objectives)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(point.stopped_at is None for point in points)
    assert [p.trial for p in points] == [t.number for t in complete] and points
    for point, trial in zip(points, complete):
        assert point.accuracy == trial.values[0]  # accuracy is the first objective
        assert point.state == trial.params["ssd.mixer.state"]
        spec = composer.Spec.model_validate(trial.user_attrs["spec"])
        assert point.attention_fraction == attention_fraction(spec)
        assert point.state_bytes == trial.user_attrs["state_bytes"]
    written, missing = write_figures(study, settings.objectives, tmp_path / "out")
    assert missing is None
    assert sorted(path.name for path in written) == ["recall.csv", "recall_vs_attention.png", "recall_vs_state.png"]
    rows = list(csv.DictReader((tmp_path / "out" / "recall.csv").open()))
    assert [int(row["trial"]) for row in rows] == [p.trial for p in points]
    assert [float(row["accuracy"]) for row in rows] == [p.accuracy for p in points]
    for path in written[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_a_search_without_accuracy_draws_no_recall_figures(tmp_path):
    study, settings = run_study(tmp_path, PLANNED, trials=2)
    assert recall_points(study, settings.objectives) == []
    assert write_figures(study, settings.objectives, tmp_path / "out") == ([], None)


def test_a_pruned_trial_is_a_point_at_its_last_evaluation(tmp_path):
    study, settings = run_study(tmp_path, trained(steps=2), trials=1)
    done = study.trials[0]
    for number, evaluations in ((1, {100: 0.25, 300: 0.125}), (2, {})):  # the second stopped before any evaluation
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, params=done.params, distributions=done.distributions,
            user_attrs=done.user_attrs, intermediate_values=evaluations))
    points = recall_points(study, settings.objectives)
    assert [(p.trial, p.stopped_at) for p in points] == [(0, None), (1, 300)]
    assert points[1].accuracy == 0.125 and points[1].state == done.params["ssd.mixer.state"]
    written, missing = write_figures(study, settings.objectives, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "recall.csv").open()))
    assert [row["stopped_at"] for row in rows] == ["", "300"] and missing is None
    # the live line says the same: where it stopped, at what accuracy, and what it was
    lines = [outcome_text(trial, settings.objectives) for trial in study.trials[1:]]
    assert lines == [f"stopped early at step 300: accuracy 0.125  ·  {done.user_attrs['layers']}", "pruned"]
