"""Holes as Optuna suggestions, points as concrete specs, and cheap rejection before training."""

import re

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

import composer
from composer.grammar.writer import to_mix
from composer.schedule import layer_names
from composer.search import trial as trial_module
from composer.search.settings import read_settings
from composer.search.space import Rejected, SearchSpace
from composer.search.train import TrainSettings
from composer.search.trial import TrialRunner, schedule_text
from search_specs import TINY_SPEC, PLANNED

SPACE_SPEC = """model holes {
  d_model = 64
  vocab   = 32
  max_len = 32
  dtype   = fp32
  block attn { mixer = attention(heads = 4) }
  block ssd  { mixer = semiseparable(state = 8, head_dim = 16, chunk = 16) }
  layers = ratio(attn : ssd = 1 : 3, placement = interleaved) * 4
  search {
    d_model            in {64, 72}
    ssd.mixer.head_dim in {16, 32}
    ssd.mixer.state    in 8 .. 32 step 8
    attention_fraction in 0 .. 1
    placement          in {front, back}
    lr                 in 1e-4 .. 1e-2 log
    batch_size         in 8 .. 16 step 8
    task = mqar(seq_len = 16, pairs = 2)
  }
}
"""


def _ask(spec, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    return trial, SearchSpace(spec).suggest(trial)


def test_each_hole_becomes_the_matching_optuna_distribution():
    trial, point = _ask(composer.loads(SPACE_SPEC))
    dists = trial.distributions
    assert isinstance(dists["d_model"], CategoricalDistribution) and dists["d_model"].choices == (64, 72)
    assert dists["ssd.mixer.state"] == IntDistribution(8, 32, step=8)
    assert dists["attention_fraction"] == FloatDistribution(0.0, 1.0)  # whole bounds, still a fraction
    assert dists["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["batch_size"] == IntDistribution(8, 16, step=8)
    assert isinstance(point["ssd.mixer.state"], int) and isinstance(point["attention_fraction"], float)


def test_concrete_spec_holds_the_point_and_no_search_section():
    space = SearchSpace(composer.loads(SPACE_SPEC))
    spec = space.concrete({"d_model": 64, "ssd.mixer.head_dim": 32, "ssd.mixer.state": 24,
                           "attention_fraction": 0.5, "placement": "back", "lr": 1e-3, "batch_size": 8})
    assert spec.search is None
    assert spec.blocks["ssd"].mixer.state == 24 and spec.blocks["ssd"].mixer.head_dim == 32
    assert layer_names(spec) == ["ssd", "ssd", "attn", "attn"]


def test_training_holes_go_to_the_trainer_not_the_spec():
    space = SearchSpace(composer.loads(SPACE_SPEC))
    point = {"lr": 3e-3, "batch_size": 16.0}
    assert space.concrete(point) == composer.loads(SPACE_SPEC).model_copy(update={"search": None})
    settings = space.training(point, TrainSettings(steps=7))
    assert (settings.lr, settings.batch_size, settings.steps) == (3e-3, 16, 7)
    assert isinstance(settings.batch_size, int)


def test_a_point_the_spec_cannot_take_is_rejected_with_the_checkers_reason():
    space = SearchSpace(composer.loads(SPACE_SPEC))
    # each value alone is valid (the loader checked that); together 2 * 72 = 144 is no multiple of 32
    with pytest.raises(Rejected, match="head_dim 32 does not divide the inner width 144"):
        space.concrete({"d_model": 72, "ssd.mixer.head_dim": 32})


def _runner(settings_lines: str) -> tuple[TrialRunner, optuna.Study]:
    spec = composer.loads(TINY_SPEC.format(settings=settings_lines))
    settings = read_settings(spec)
    study = optuna.create_study(directions=[o.direction for o in settings.objectives],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    return TrialRunner(spec, settings, device="cpu"), study


def test_limit_breaking_point_is_pruned_with_its_reason_before_any_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a rejected point must not be trained")
    monkeypatch.setattr(trial_module, "train", no_training)
    runner, study = _runner(PLANNED.replace("objectives = [params, state_bytes]",
                                            "objectives = [accuracy]\n    max_params = 100"))
    study.optimize(runner, n_trials=2)
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert "parameters, over max_params 100" in trial.user_attrs["rejected"]


def test_completed_trial_keeps_its_spec_measures_and_layers():
    runner, study = _runner(PLANNED)
    study.optimize(runner, n_trials=1)
    trial = study.trials[0]
    spec = composer.Spec.model_validate(trial.user_attrs["spec"])
    plan = composer.plan(spec)
    assert trial.values == [plan.params, plan.inference_state_bytes()]
    assert trial.user_attrs["layers"] == schedule_text(layer_names(spec))


def test_schedule_text_folds_runs():
    assert schedule_text(["ssd", "ssd", "ssd", "attn", "ssd"]) == "ssd×3 attn ssd"


# SPACE_SPEC's model over 6 layers, searching layers 0 and 4 one by one
PER_LAYER_SPEC = re.sub(r"search \{.*\n  \}", "search {\n    layer_0 in {attn, ssd}\n    layer_4 in {attn, ssd}\n"
                        "    task = mqar(seq_len = 16, pairs = 2)\n  }", SPACE_SPEC.replace("* 4", "* 6"), flags=re.S)


def test_per_layer_holes_choose_each_layers_block_and_the_point_reads_back_as_a_list_schedule():
    spec = composer.loads(PER_LAYER_SPEC)
    assert layer_names(spec).count("attn") == 2  # 1 : 3 over 6 layers rounds the share to 2
    trial, point = _ask(spec)
    assert trial.distributions["layer_4"] == CategoricalDistribution(("attn", "ssd"))
    concrete = SearchSpace(spec).concrete({"layer_0": "attn", "layer_4": "attn"})
    names = layer_names(concrete)
    assert names[0] == names[4] == "attn" and names[1:4] == layer_names(spec)[1:4]  # the other layers kept
    # the same spec syntax expresses the result: written and read back, the layers are the same
    again = composer.loads(to_mix(concrete))
    assert layer_names(again) == names


@pytest.mark.parametrize("entry,message", [
    ("layer_6 in {attn, ssd}", "`layer_6` names no layer: the schedule has 6"),
    ("layer_2 in {attn, mlp}", "layer_2 takes a block name, one of attn, ssd; got 'mlp'"),
    ("layer_2 in {attn, ssd}\n    placement in {front, back}", "a search takes one or the other"),
])
def test_per_layer_holes_that_name_no_layer_or_block_or_mix_with_the_ratios_are_errors(entry, message):
    text = PER_LAYER_SPEC.replace("layer_0 in {attn, ssd}\n    layer_4 in {attn, ssd}", entry)
    with pytest.raises(composer.SpecError) as error:
        composer.loads(text)
    assert message in error.value.render()
