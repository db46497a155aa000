"""A search's known-results figures: recall against the attention fraction, and against the state size.

What the field reports about hybrids is read off these two: recall improves as linear:full attention drops
(2507.06457), and a pure SSM's recall rises with its state (Zoology). The rows come from the study alone (each
complete trial's stored spec, hole values and accuracy), so they can be drawn again from the storage at any
time. They are always written as `recall.csv`; the PNGs need matplotlib (`pip install "composer[report]"`).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import optuna
from optuna.trial import TrialState

from composer.schedule import layer_names
from composer.search.objectives import Objective
from composer.spec import Spec

# The mixer kinds counted as attention in the attention fraction (softmax attention, windowed or not).
ATTENTION_KINDS = frozenset({"attention"})


@dataclass(frozen=True)
class RecallPoint:
    trial: int
    accuracy: float
    attention_fraction: float
    state: int | None  # the trial's value of a `*.state` hole (e.g. ssd.mixer.state); None without one
    state_bytes: int   # planned inference state for one sequence at max_len
    layers: str


def attention_fraction(spec: Spec) -> float:
    names = layer_names(spec)
    return sum(spec.blocks[name].mixer.kind in ATTENTION_KINDS for name in names) / len(names)


def recall_points(study: optuna.Study, objectives: tuple[Objective, ...]) -> list[RecallPoint]:
    """One point a complete trial, in trial order; none when accuracy is not an objective."""
    names = [objective.name for objective in objectives]
    if "accuracy" not in names:
        return []
    index = names.index("accuracy")
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        spec = Spec.model_validate(trial.user_attrs["spec"])
        states = [value for name, value in sorted(trial.params.items()) if name.split(".")[-1] == "state"]
        points.append(RecallPoint(trial.number, trial.values[index], attention_fraction(spec),
                                  int(states[0]) if states else None, int(trial.user_attrs["state_bytes"]),
                                  trial.user_attrs.get("layers", "")))
    return points


def write_csv(points: list[RecallPoint], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as sink:
        writer = csv.DictWriter(sink, fieldnames=[f.name for f in fields(RecallPoint)])
        writer.writeheader()
        writer.writerows(asdict(point) for point in points)
    return path


def _groups(points: list[RecallPoint]) -> list[tuple[str, list[RecallPoint]]]:
    """Pure SSM (no attention layer), hybrid, and attention only: the three the known results speak of."""
    groups = [("no attention", [p for p in points if p.attention_fraction == 0]),
              ("hybrid", [p for p in points if 0 < p.attention_fraction < 1]),
              ("attention only", [p for p in points if p.attention_fraction == 1])]
    return [(label, group) for label, group in groups if group]


def write_pngs(points: list[RecallPoint], out_dir: Path) -> list[Path]:
    """recall_vs_attention.png and recall_vs_state.png; ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    by_hole = all(p.state is not None for p in points)
    written = []
    figure, axes = plt.subplots(figsize=(6, 4))
    colours = [p.state if by_hole else p.state_bytes for p in points]
    drawn = axes.scatter([p.attention_fraction for p in points], [p.accuracy for p in points], c=colours,
                         cmap="viridis", norm=matplotlib.colors.LogNorm() if len(set(colours)) > 1 else None)
    figure.colorbar(drawn, ax=axes, label="state (hole value)" if by_hole else "inference state bytes")
    axes.set(xlabel="attention fraction (attention layers / layers)", ylabel="held-out accuracy",
             title="recall against attention fraction", ylim=(-0.02, 1.02))
    figure.tight_layout()
    written.append(out_dir / "recall_vs_attention.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    for label, group in _groups(points):
        axes.scatter([p.state if by_hole else p.state_bytes for p in group], [p.accuracy for p in group],
                     label=label)
    axes.set_xscale("log", base=2)
    axes.set(xlabel="state (hole value)" if by_hole else "inference state bytes (planned, at max_len)",
             ylabel="held-out accuracy", title="recall against state size", ylim=(-0.02, 1.02))
    axes.legend()
    figure.tight_layout()
    written.append(out_dir / "recall_vs_state.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)
    return written


def write_figures(study: optuna.Study, objectives: tuple[Objective, ...], out_dir: Path) -> tuple[list[Path], str | None]:
    """recall.csv and, with matplotlib, the two PNGs: (paths written, why the PNGs are missing or None)."""
    points = recall_points(study, objectives)
    if not points:
        return [], None
    written = [write_csv(points, out_dir / "recall.csv")]
    try:
        written += write_pngs(points, out_dir)
    except ImportError:
        return written, 'the PNG figures need matplotlib: pip install "composer[report]"'
    return written, None
