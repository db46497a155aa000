"""Tiny specs for the search tests: two-layer models that train a step in milliseconds on CPU."""

from __future__ import annotations

from pathlib import Path

TINY_SPEC = """model tiny {{
  d_model = 16
  vocab   = 32
  max_len = 32
  dtype   = fp32
  block attn {{
    mixer = attention(heads = 2)
  }}
  block ssd {{
    mixer = semiseparable(state = 8, head_dim = 8, chunk = 16)
  }}
  layers = ratio(attn : ssd = 1 : 1, placement = interleaved) * 2
  search {{
    attention_fraction in 0.0 .. 1.0
    ssd.mixer.state    in {{8, 16}}
    lr                 in 1e-3 .. 1e-2 log
{settings}
  }}
}}
"""

# Objectives from the plan alone: a trial costs a plan, no training.
PLANNED = """    objectives = [params, state_bytes]
    task = mqar(seq_len = 16, pairs = 2)"""

# A real (if very short) training run per trial.
TRAINED = """    objectives = [accuracy, state_bytes]
    task = mqar(seq_len = 16, pairs = 2)
    steps = {steps}
    batch_size = 8
    eval_batches = 1"""


def write_spec(directory: Path, settings: str = PLANNED, name: str = "tiny.mix") -> Path:
    path = directory / name
    path.write_text(TINY_SPEC.format(settings=settings))
    return path


def trained(steps: int = 4) -> str:
    return TRAINED.format(steps=steps)


def run_study(directory: Path, settings: str, trials: int):
    """A finished study of TINY_SPEC with these settings lines, its trials run on the CPU in this process:
    (the optuna study, its SearchSettings)."""
    import composer
    from composer.search.settings import read_settings
    from composer.search.study import StudyConfig, create_study, storage_url_for
    from composer.search.trial import TrialRunner

    spec = composer.loads(TINY_SPEC.format(settings=settings))
    search_settings = read_settings(spec)
    study = create_study(StudyConfig(storage_url_for(str(directory / "study.db")), "tiny"), search_settings)
    study.fill_queue(trials)
    study.run_worker(TrialRunner(spec, search_settings, "cpu"))
    return study.study, search_settings
