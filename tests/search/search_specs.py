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
