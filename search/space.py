"""A spec's search holes as Optuna suggestions, and a suggested point as a concrete spec.

    ssd.mixer.state    in {8, 16, 32}     -> trial.suggest_categorical
    attention_fraction in 0.0 .. 0.5      -> trial.suggest_float
    ssd.mixer.head_dim in 8 .. 32 step 8  -> trial.suggest_int(step = 8)
    lr                 in 1e-4 .. 1e-2 log -> trial.suggest_float(log = True)

Architecture holes go into the spec through composer.holes.assign and the full check
(composer.validate), so a point the spec cannot take (a head_dim that does not divide
the width) is rejected with the checker's own message before anything is built.
Training holes (lr, weight_decay, batch_size, steps, warmup, seed) go to the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from pydantic import ValidationError

from composer import SpecError, validate
from composer.holes import TRAINING_HOLES, HoleError, assign
from composer.search.train import TrainSettings
from composer.spec import SearchParam, Spec

# Holes whose values are fractions or rates even when their bounds are written as whole numbers.
FLOAT_HOLES = frozenset({"attention_fraction", "lr", "weight_decay"})


class Rejected(Exception):
    """A point the spec cannot take, or that breaks a constraint; the message says which and why."""


def _is_int_range(param: SearchParam) -> bool:
    if param.path in FLOAT_HOLES:
        return False
    bounds = [param.low, param.high] + ([param.step] if param.step is not None else [])
    return all(float(b).is_integer() for b in bounds)


def suggest(trial: optuna.Trial, param: SearchParam) -> Any:
    """One hole's value for this trial (define-by-run: the name is the hole's path)."""
    if param.choices is not None:
        return trial.suggest_categorical(param.path, param.choices)
    if _is_int_range(param):
        return trial.suggest_int(param.path, int(param.low), int(param.high),
                                 step=int(param.step or 1), log=param.log)
    return trial.suggest_float(param.path, param.low, param.high, step=param.step, log=param.log)


class SearchSpace:
    """The holes of one spec; turns trials into points and points into specs and training settings."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.params = list(spec.search.space) if spec.search is not None else []

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {param.path: suggest(trial, param) for param in self.params}

    def concrete(self, point: dict[str, Any]) -> Spec:
        """The spec with every architecture hole filled and no search section; Rejected if invalid."""
        current = self.spec.model_copy(update={"search": None})
        for path, value in point.items():
            if path in TRAINING_HOLES:
                continue
            try:
                current = Spec.model_validate(assign(current, path, value))
            except HoleError as exc:
                raise Rejected(f"`{path} = {value!r}`: {exc}") from None
            except ValidationError as exc:
                raise Rejected(f"`{path} = {value!r}`: {exc.errors()[0]['msg']}") from None
        try:
            return validate(current.model_dump())
        except SpecError as exc:
            raise Rejected(" ".join(d.message if not d.hint else f"{d.message} ({d.hint})"
                                    for d in exc.diagnostics)) from None

    @staticmethod
    def training(point: dict[str, Any], base: TrainSettings) -> TrainSettings:
        """`base` with the point's training holes put in (whole numbers where the trainer counts)."""
        updates = {path: value for path, value in point.items() if path in TRAINING_HOLES}
        for field in dataclasses.fields(TrainSettings):
            if field.name in updates and field.type in ("int", "int | None"):
                updates[field.name] = int(updates[field.name])
        return dataclasses.replace(base, **updates)
