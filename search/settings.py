"""The settings of a spec's `search { ... }` section (everything but the holes), checked up front.

    search {
      ssd.mixer.state in {8, 16, 32}          # a hole: see composer.search.space
      task       = mqar(seq_len = 256, pairs = 32)
      objectives = [accuracy, state_bytes]
      max_params = 1M
      steps      = 300
    }

Every problem is a SettingsError naming the setting's path under `search.settings`, so the
CLI can point at its line; nothing is built or trained before the settings are known good.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from composer.grammar.errors import did_you_mean
from composer.search.objectives import OBJECTIVES, Objective
from composer.search.tasks import Task, TaskError, make_task
from composer.search.train import COMPILE_MODES, PRECISIONS, TrainSettings
from composer.spec import Spec

SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")
DEFAULT_TRIALS = 32


class SettingsError(ValueError):
    """A search setting that cannot work; `path` is where it sits under search.settings."""

    def __init__(self, path: tuple, message: str, hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


@dataclass(frozen=True)
class SearchSettings:
    task: Task
    objectives: tuple[Objective, ...]
    trials: int
    sampler: str
    population: int          # NSGA-II's generation size
    pruner: str
    max_params: int | None
    max_state_bytes: int | None
    max_decode_ms: float | None  # a decoding step slower than this rejects the point before training
    train: TrainSettings

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def needs_training(self) -> bool:
        return any(o.needs_training for o in self.objectives)

    @property
    def measures_decoding(self) -> bool:
        return self.max_decode_ms is not None or any(o.name == "decode_ms" for o in self.objectives)

    @property
    def prunes(self) -> bool:
        """Intermediate reports exist only for one objective that training improves step by step."""
        return self.pruner != "none" and not self.multi_objective and self.objectives[0].name == "accuracy"


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(settings: dict, key: str, default: int | None, minimum: int) -> int | None:
    value = settings.get(key, default)
    if value is not None and (not _is_whole(value) or value < minimum):
        raise SettingsError((key,), f"`{key}` must be a whole number >= {minimum}, got {value!r}")
    return value


def _positive(settings: dict, key: str, default: float, allow_zero: bool = False) -> float:
    value = settings.get(key, default)
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SettingsError((key,), f"`{key}` must be a number {bound}, got {value!r}")
    return float(value)


def _one_of(settings: dict, key: str, default: str, options: tuple[str, ...]) -> str:
    value = settings.get(key, default)
    if value not in options:
        raise SettingsError((key,), f"`{key}` must be one of {', '.join(options)}, got {value!r}",
                            did_you_mean(str(value), options))
    return value


def _objectives(settings: dict) -> tuple[Objective, ...]:
    names = settings.get("objectives", ["accuracy"])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names:
        raise SettingsError(("objectives",), "`objectives` is a name or a list of names, e.g. [accuracy, params]",
                            f"objectives: {', '.join(OBJECTIVES)}")
    for i, name in enumerate(names):
        if name not in OBJECTIVES:
            raise SettingsError(("objectives",) if len(names) == 1 else ("objectives", i),
                                f"unknown objective {name!r}",
                                did_you_mean(str(name), OBJECTIVES) or f"objectives: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise SettingsError(("objectives",), "an objective is listed twice")
    return tuple(OBJECTIVES[name] for name in names)


def _train_settings(settings: dict) -> TrainSettings:
    defaults = TrainSettings()
    steps = _whole(settings, "steps", defaults.steps, 1)
    return TrainSettings(
        steps=steps,
        batch_size=_whole(settings, "batch_size", defaults.batch_size, 1),
        lr=_positive(settings, "lr", defaults.lr),
        weight_decay=_positive(settings, "weight_decay", defaults.weight_decay, allow_zero=True),
        warmup=_whole(settings, "warmup", defaults.warmup, 0),
        seed=_whole(settings, "seed", defaults.seed, 0),
        eval_batches=_whole(settings, "eval_batches", defaults.eval_batches, 1),
        eval_every=_whole(settings, "eval_every", max(1, steps // 10), 0),
        precision=_one_of(settings, "precision", defaults.precision, PRECISIONS),
        compile=_one_of(settings, "compile", defaults.compile, tuple(COMPILE_MODES)),
    )


def _task(settings: dict, spec: Spec) -> Task:
    try:
        return make_task(settings.get("task", "mqar"), spec.vocab, spec.max_len)
    except TaskError as exc:
        path = ("task",) if exc.field is None or not isinstance(settings.get("task"), dict) else ("task", exc.field)
        raise SettingsError(path, str(exc), exc.hint) from None


KNOWN = ({"task", "objectives", "trials", "sampler", "population", "pruner", "max_params", "max_state_bytes",
          "max_decode_ms"}
         | {f.name for f in dataclasses.fields(TrainSettings)})


def read_settings(spec: Spec) -> SearchSettings:
    """The spec's search settings with defaults filled in, or SettingsError."""
    settings = spec.search.settings if spec.search is not None else {}
    for key in settings:
        if key not in KNOWN:
            raise SettingsError((key,), f"unknown search setting `{key}`",
                                did_you_mean(key, KNOWN) or f"settings: {', '.join(sorted(KNOWN))}")
    objectives = _objectives(settings)
    pruner = _one_of(settings, "pruner", "median", PRUNERS)
    return SearchSettings(
        task=_task(settings, spec),
        objectives=objectives,
        trials=_whole(settings, "trials", DEFAULT_TRIALS, 1),
        sampler=_one_of(settings, "sampler", "tpe", SAMPLERS),
        population=_whole(settings, "population", 16, 2),
        pruner=pruner,
        max_params=_whole(settings, "max_params", None, 1),
        max_state_bytes=_whole(settings, "max_state_bytes", None, 1),
        max_decode_ms=_positive(settings, "max_decode_ms", 0.0) if "max_decode_ms" in settings else None,
        train=_train_settings(settings),
    )
