"""The search section's settings: defaults, objectives and errors that point at the setting."""

from pathlib import Path

import pytest

import composer
from composer.cli import main
from composer.search.settings import SettingsError, read_settings
from search_specs import TINY_SPEC, write_spec


EXAMPLES = Path(__file__).parents[2] / "examples"
TASK = "    task = mqar(seq_len = 16, pairs = 2)\n"


def _settings(lines: str):
    return read_settings(composer.loads(TINY_SPEC.format(settings=lines)))


def test_a_spec_without_settings_searches_accuracy_on_mqar_with_tpe_and_median_pruning():
    settings = read_settings(composer.load(EXAMPLES / "tiny_mqar.mix"))
    assert [o.name for o in settings.objectives] == ["accuracy"]
    assert (settings.task.kind, settings.task.vocab, settings.task.seq_len) == ("mqar", 32, 64)  # the spec's vocab
    assert (settings.sampler, settings.pruner, settings.trials) == ("tpe", "median", 32)
    assert settings.prunes and settings.needs_training


def test_several_objectives_are_multi_objective_without_pruning():
    settings = _settings("    objectives = [accuracy, params]\n    task = mqar(seq_len = 16, pairs = 2)")
    assert settings.multi_objective and not settings.prunes
    assert [o.direction for o in settings.objectives] == ["maximize", "minimize"]


def test_planned_objectives_alone_need_no_training():
    settings = _settings("    objectives = [params, state_bytes]\n    task = mqar(seq_len = 16, pairs = 2)")
    assert not settings.needs_training


def test_training_settings_reach_the_trainer():
    settings = _settings("    task = mqar(seq_len = 16, pairs = 2)\n    steps = 40\n    lr = 0.002\n    warmup = 5")
    assert (settings.train.steps, settings.train.lr, settings.train.warmup) == (40, 0.002, 5)
    assert settings.train.precision == "fp32"
    assert _settings("    task = mqar(seq_len = 16, pairs = 2)\n    precision = bf16").train.precision == "bf16"
    assert settings.train.compile == "none"
    assert _settings(TASK + "    compile = reduce_overhead").train.compile == "reduce_overhead"


@pytest.mark.parametrize("lines, path, words", [
    ("    objectivs = [accuracy]", ("objectivs",), "did you mean `objectives`?"),
    ("    objectives = [acuracy]", ("objectives",), "did you mean `accuracy`?"),
    ("    task = mqar(seq_len = 16, pair = 2)", ("task", "pair"), "did you mean `pairs`?"),
    ("    task = mqar(seq_len = 64)", ("task", "seq_len"), "longer than the model's max_len 32"),
    (TASK + "    sampler = nsga3", ("sampler",), "did you mean `nsga2`?"),
    (TASK + "    steps = 0", ("steps",), "whole number >= 1"),
    (TASK + "    lr = -1", ("lr",), "number > 0"),
    (TASK + "    precision = bf61", ("precision",), "did you mean `bf16`?"),
    (TASK + "    compile = reduce_overhed", ("compile",), "did you mean `reduce_overhead`?"),
    (TASK + "    max_decode_ms = 0", ("max_decode_ms",), "number > 0"),
])
def test_bad_setting_names_its_path_and_hint(lines, path, words):
    with pytest.raises(SettingsError) as caught:
        _settings(lines)
    assert caught.value.path == path
    assert words in f"{caught.value} {caught.value.hint}"


def test_mixc_search_points_at_the_bad_settings_line(tmp_path, capsys):
    spec = write_spec(tmp_path, "    task = mqar(seq_len = 16, pair = 2)")
    assert main(["search", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:17:" in err and "task mqar has no setting `pair`" in err and "did you mean `pairs`?" in err
    assert "Traceback" not in err
