"""What a trial is scored on, and which way is better.

Three kinds of measure: the planned ones (parameters, inference state) are closed-form
from the spec and cost nothing, so a search on them alone never trains; the trained
ones (accuracy, throughput, latency) come from training the model on the task; and the
decoding step's time, measured on the built model before any training (weights do not
change it), so a limit on it rejects a point before it costs a training run.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.report import human_bytes


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str          # "maximize" or "minimize", as optuna spells them
    needs_training: bool
    description: str

    def format(self, value: float) -> str:
        return FORMATS[self.name](value)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", "maximize", True, "held-out accuracy on the task"),
    Objective("tokens_per_second", "maximize", True, "measured training throughput"),
    Objective("latency_ms", "minimize", True, "measured forward time of one task-length sequence, ms"),
    Objective("decode_ms", "minimize", False, "measured time of one cached decoding step at batch 1 after a "
                                              "prefill of the task's length, ms (before training)"),
    Objective("params", "minimize", False, "parameter count (planned)"),
    Objective("state_bytes", "minimize", False, "inference state for one sequence at max_len: "
                                                 "fixed state plus KV cache (planned)"),
)}

FORMATS = {
    "accuracy": lambda v: f"{v:.3f}",
    "tokens_per_second": lambda v: f"{v:,.0f}/s",
    "latency_ms": lambda v: f"{v:.2f} ms",
    "decode_ms": lambda v: f"{v:.3f} ms",
    "params": lambda v: f"{int(v):,}",
    "state_bytes": human_bytes,
}
