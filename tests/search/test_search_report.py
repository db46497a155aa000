"""The report: how trials ended, the Pareto front, importances on studies too small for them."""

import composer
from composer.search.report import front, front_table, importances, outcomes, problems_table, write_best_specs
from search_specs import PLANNED, run_study
from rich.console import Console

# Pure-SSM points plan over 4,000 parameters; with max_params 4,000 they are rejected before anything else.
LIMITED = PLANNED + "\n    max_params = 4000"


def _finished_study(tmp_path, settings_lines=LIMITED, trials=12):
    return run_study(tmp_path, settings_lines, trials)


def _text(renderable) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_outcomes_and_problems_name_the_rejected_points_and_why(tmp_path):
    study, settings = _finished_study(tmp_path)
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    assert rejected and all(t.user_attrs["params"] > 4000 for t in rejected)
    assert f"{len(rejected)} rejected" in outcomes(study)
    table = _text(problems_table(study, settings.objectives))
    for trial in rejected:
        assert f"rejected: {trial.user_attrs['params']:,} parameters, over max_params 4,000" in table


def test_front_holds_only_trials_no_other_trial_dominates(tmp_path):
    study, settings = _finished_study(tmp_path)
    complete = [t for t in study.trials if t.values is not None and t.state.name == "COMPLETE"]
    best = front(study)
    assert best
    for trial in best:  # both objectives are minimised
        assert not any(all(o <= b for o, b in zip(other.values, trial.values)) and other.values != trial.values
                       for other in complete)
    table = _text(front_table(study, settings.objectives))
    assert all(f"{t.values[0]:,.0f}" in table for t in best)


def test_importances_of_a_one_trial_study_say_why_there_are_none(tmp_path):
    study, settings = _finished_study(tmp_path, PLANNED, trials=1)
    found = importances(study, settings.objectives)
    assert set(found) == {"params", "state_bytes"}
    assert all("needs at least two complete trials" in reason for reason in found.values())


def test_importances_rank_the_holes_that_move_an_objective(tmp_path):
    study, settings = _finished_study(tmp_path, PLANNED, trials=12)
    found = importances(study, settings.objectives)
    # lr moves neither planned measure: it must not come out on top
    assert max(found["params"], key=found["params"].get) != "lr"


def test_best_specs_are_written_as_loadable_files(tmp_path):
    study, settings = _finished_study(tmp_path, PLANNED, trials=4)
    written = write_best_specs(study, settings.objectives, {"kind": "mqar", "seq_len": 16}, tmp_path / "best")
    assert len(written) == len(front(study))
    for path in written:
        spec = composer.load(path)
        trial = study.trials[int(spec.name.removeprefix("tiny_trial"))]
        assert composer.plan(spec).params == trial.values[0]
