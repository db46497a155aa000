"""Known results on MQAR (Zoology, Arora et al., 2023), measured through the search's own trial path.

At a size where recall is hard for a fixed state: a hybrid with one attention layer recalls
where the pure SSM of about the same (here: larger) parameter count cannot, and the pure
SSM's accuracy rises with its state size. Minutes of CPU training: `python -m pytest -m slow`.
Each row is one trial of the spec below, run as a search would run it (holes assigned,
checked, planned, trained, scored on held-out data), with torch on one thread so the
numbers repeat on any CPU of the same build.
"""

import optuna
import pytest
import torch

import composer
from composer.search.settings import read_settings
from composer.search.trial import TrialRunner

SPEC = """model recall {
  d_model = 64
  vocab   = 32
  max_len = 64
  dtype   = fp32
  block attn {
    mixer   = attention(heads = 4)
    channel = swiglu()
  }
  block ssd {
    mixer   = semiseparable(state = 16, head_dim = 16, chunk = 32)
    channel = swiglu()
  }
  layers = ratio(attn : ssd = 1 : 1, placement = interleaved) * 2
  search {
    attention_fraction in 0.0 .. 0.5
    ssd.mixer.state    in {8, 16, 32, 64}
    task       = mqar(seq_len = 32, pairs = 4, noise = false)
    objectives = [accuracy, params]
    steps      = 600
    batch_size = 64
    lr         = 3e-3
  }
}
"""
POINTS = {"hybrid, state 16": {"attention_fraction": 0.5, "ssd.mixer.state": 16},
          **{f"pure SSM, state {n}": {"attention_fraction": 0.0, "ssd.mixer.state": n} for n in (8, 16, 32, 64)}}


@pytest.fixture(scope="module")
def measured():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = composer.loads(SPEC)
        runner = TrialRunner(spec, read_settings(spec), device="cpu")
        rows = {}
        for name, point in POINTS.items():
            trial = optuna.trial.FixedTrial(point)
            accuracy, params = runner(trial)
            rows[name] = (accuracy, int(params), trial.user_attrs["layers"])
    finally:
        torch.set_num_threads(threads)
    print("\n| model | layers | params | MQAR accuracy |\n| --- | --- | --- | --- |")
    for name, (accuracy, params, layers) in rows.items():
        print(f"| {name} | {layers} | {params:,} | {accuracy:.3f} |")
    return rows


@pytest.mark.slow
def test_hybrid_recalls_where_the_pure_ssm_of_its_size_cannot(measured):
    hybrid_accuracy, hybrid_params, _ = measured["hybrid, state 16"]
    same_budget = [row for name, row in measured.items() if name.startswith("pure") and row[1] >= hybrid_params
                   and row[1] <= 1.1 * hybrid_params]
    assert same_budget, "no pure SSM within 10% above the hybrid's parameters"
    assert hybrid_accuracy >= 0.9
    assert all(hybrid_accuracy > accuracy + 0.1 for accuracy, _, _ in same_budget)


@pytest.mark.slow
def test_pure_ssm_recall_rises_with_state_size(measured):
    accuracies = [measured[f"pure SSM, state {n}"][0] for n in (8, 16, 32, 64)]
    assert accuracies[-1] > accuracies[0] + 0.3
    assert all(later >= earlier - 0.05 for earlier, later in zip(accuracies, accuracies[1:]))
