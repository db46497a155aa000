"""One trial: suggest a point, check it, train it, measure it.

The cheap checks come first: the spec must accept the point (composer.validate) and
the planned parameters and inference state must fit the search's limits, all before a
model is built; then, where the search asks for it, one decoding step is timed on the
built, untrained model (`max_decode_ms`, the `decode_ms` objective), still before
training. A rejected point ends the trial as pruned, with the reason kept in the
trial's user attribute `rejected`, so the report can say why and the sampler learns to
avoid the region. Everything a report needs later (the concrete spec, its measures,
the training settings) is stored on the trial, so a report never re-derives it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import torch

from composer import plan
from composer.decoding import DecodeError, decoding_model, time_decode
from composer.report import human_bytes
from composer.schedule import layer_names
from composer.search.settings import SearchSettings
from composer.search.space import Rejected, SearchSpace
from composer.search.train import train
from composer.spec import Spec


# A decoding measurement: the median of DECODE_REPEATS runs of DECODE_STEPS greedy steps each.
DECODE_STEPS, DECODE_REPEATS = 8, 3


def schedule_text(names: list[str]) -> str:
    """["ssd", "ssd", "attn"] -> "ssd×2 attn": the layers, runs folded, for tables."""
    runs: list[list] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return " ".join(name if count == 1 else f"{name}×{count}" for name, count in runs)


class TrialRunner:
    """Callable on an optuna.Trial: returns the objective values, or raises TrialPruned."""

    def __init__(self, spec: Spec, settings: SearchSettings, device: str | None = None,
                 weights_dir: Path | None = None):
        self.space, self.settings, self.device = SearchSpace(spec), settings, device
        self.weights_dir = weights_dir  # None: trained weights are not kept

    def __call__(self, trial: optuna.Trial) -> list[float]:
        point = self.space.suggest(trial)
        try:
            candidate = self.space.concrete(point)
            measures = self._check_limits(candidate, trial)
        except Rejected as exc:
            trial.set_user_attr("rejected", str(exc))
            raise optuna.TrialPruned(f"rejected: {exc}") from None
        trial.set_user_attr("spec", candidate.model_dump(mode="json"))
        trial.set_user_attr("layers", schedule_text(layer_names(candidate)))
        if self.settings.needs_training:
            trained = self._train(trial, candidate, point)
            for name, value in trained.items():
                trial.set_user_attr(name, value)
            measures.update(trained)
        return [measures[objective.name] for objective in self.settings.objectives]

    def _check_limits(self, candidate: Spec, trial: optuna.Trial) -> dict[str, float]:
        """The planned measures, recorded on the trial even when they break a limit."""
        the_plan = plan(candidate)
        params, state_bytes = the_plan.params, the_plan.inference_state_bytes()
        trial.set_user_attr("params", params)
        trial.set_user_attr("state_bytes", state_bytes)
        limits = self.settings
        if limits.max_params is not None and params > limits.max_params:
            raise Rejected(f"{params:,} parameters, over max_params {limits.max_params:,}")
        if limits.max_state_bytes is not None and state_bytes > limits.max_state_bytes:
            raise Rejected(f"inference state {human_bytes(state_bytes)}, over max_state_bytes "
                           f"{human_bytes(limits.max_state_bytes)}")
        measures = {"params": params, "state_bytes": state_bytes}
        if limits.measures_decoding:
            measures["decode_ms"] = self._decode_ms(candidate)
            trial.set_user_attr("decode_ms", measures["decode_ms"])
            if limits.max_decode_ms is not None and measures["decode_ms"] > limits.max_decode_ms:
                raise Rejected(f"a decoding step takes {measures['decode_ms']:.3f} ms, over max_decode_ms "
                               f"{limits.max_decode_ms:g}")
        return measures

    def _decode_ms(self, candidate: Spec) -> float:
        """One cached decoding step at batch 1 after a prefill of the task's length (the median of
        DECODE_REPEATS runs of DECODE_STEPS steps), on the trials' device at their precision."""
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        precision = "bf16" if self.settings.train.precision == "bf16" and device.startswith("cuda") else "fp32"
        try:
            model = decoding_model(candidate, device=device, precision=precision)
        except DecodeError as exc:
            raise Rejected(str(exc)) from None
        timing = time_decode(model, 1, self.settings.task.seq_len, DECODE_STEPS, repeats=DECODE_REPEATS)
        return timing.decode_ms_per_step

    def _train(self, trial: optuna.Trial, candidate: Spec, point: dict) -> dict[str, float]:
        settings = self.space.training(point, self.settings.train)
        trial.set_user_attr("train", dataclasses.asdict(settings))

        def report(step: int, accuracy: float) -> None:
            trial.report(accuracy, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"stopped at step {step}: accuracy {accuracy:.3f}")

        weights = None if self.weights_dir is None else self.weights_dir / f"trial{trial.number}.safetensors"
        result = train(candidate, self.settings.task, settings, device=self.device,
                       on_eval=report if self.settings.prunes else None, weights_out=weights)
        if weights is not None:
            trial.set_user_attr("weights", str(weights))
        return {"accuracy": result.accuracy, "tokens_per_second": result.tokens_per_second,
                "latency_ms": result.latency_ms, "loss": result.loss}
