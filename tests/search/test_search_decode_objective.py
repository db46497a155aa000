"""The decoding step as an objective and as a limit: timed on the built model before any training, so a
point over `max_decode_ms` costs no training run."""

import pytest

import composer
from composer.search.settings import SettingsError, read_settings
from search_specs import TINY_SPEC, run_study, trained


def test_decode_ms_is_measured_without_training(tmp_path):
    study, _ = run_study(tmp_path, "    objectives = [decode_ms, params]\n    task = mqar(seq_len = 16, pairs = 2)", trials=3)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    for trial in complete:
        assert trial.values[0] == trial.user_attrs["decode_ms"] and 0 < trial.values[0] < 1e3
        assert "train" not in trial.user_attrs  # no training ran


def test_a_point_over_max_decode_ms_is_rejected_before_training(tmp_path):
    study, _ = run_study(tmp_path, trained(steps=2) + "\n    max_decode_ms = 0.000001", trials=2)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    for trial in study.trials:
        assert trial.user_attrs["rejected"].startswith("a decoding step takes ")
        assert "over max_decode_ms 1e-06" in trial.user_attrs["rejected"]
        assert "train" not in trial.user_attrs


@pytest.mark.parametrize("value", ["-1", "0", "fast"])
def test_max_decode_ms_must_be_a_positive_number(value):
    spec = composer.loads(TINY_SPEC.format(settings=f"    task = mqar(seq_len = 16, pairs = 2)\n    max_decode_ms = {value}"))
    with pytest.raises(SettingsError, match="`max_decode_ms` must be a number > 0"):
        read_settings(spec)
