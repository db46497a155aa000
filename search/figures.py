"""A search's known-results figures: recall against the attention fraction, and against the state size.

What the field reports about hybrids is read off these two: recall improves as linear:full attention drops
(2507.06457), and a pure SSM's recall rises with its state (Zoology). The rows come from the study alone (each
complete trial's stored spec, hole values and accuracy), so they can be drawn again from the storage at any
time (`mixc search SPEC --report-only`). A trial the pruner stopped early is a row too, with the accuracy of its
last evaluation and the step it stopped at: under Hyperband most weak points stop early, and those are the very
points (a pure SSM at small state) the known results speak of. They are always written as `recall.csv`; the PNGs need matplotlib (`pip install "composer[report]"`).
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
    stopped_at: int | None = None  # the step a pruned trial stopped at (its accuracy is that evaluation's)


def attention_fraction(spec: Spec) -> float:
    names = layer_names(spec)
    return sum(spec.blocks[name].mixer.kind in ATTENTION_KINDS for name in names) / len(names)


def recall_points(study: optuna.Study, objectives: tuple[Objective, ...]) -> list[RecallPoint]:
    """One point a complete or pruned trial, in trial order; none when accuracy is not an objective. A pruned
    trial's accuracy is its last reported one (search/trial.py reports the held-out accuracy at each
    evaluation); one stopped before its first evaluation has no point."""
    names = [objective.name for objective in objectives]
    if "accuracy" not in names:
        return []
    index = names.index("accuracy")
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if trial.state == TrialState.COMPLETE:
            accuracy, stopped_at = trial.values[index], None
        elif trial.intermediate_values:
            stopped_at = max(trial.intermediate_values)
            accuracy = trial.intermediate_values[stopped_at]
        else:
            continue
        spec = Spec.model_validate(trial.user_attrs["spec"])
        states = [value for name, value in sorted(trial.params.items()) if name.split(".")[-1] == "state"]
        points.append(RecallPoint(trial.number, accuracy, attention_fraction(spec),
                                  int(states[0]) if states else None, int(trial.user_attrs["state_bytes"]),
                                  trial.user_attrs.get("layers", ""), stopped_at))
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


# How a point is drawn: complete trials as dots, early-stopped ones as crosses (their last evaluation's accuracy).
MARKERS = (("complete", "o", lambda p: p.stopped_at is None),
           ("stopped early (last evaluation)", "x", lambda p: p.stopped_at is not None))


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
    norm = (matplotlib.colors.LogNorm(min(colours), max(colours)) if len(set(colours)) > 1
            else matplotlib.colors.Normalize(colours[0] - 1, colours[0] + 1))
    for label, marker, keep in MARKERS:
        kept = [p for p in points if keep(p)]
        if kept:
            drawn = axes.scatter([p.attention_fraction for p in kept], [p.accuracy for p in kept], marker=marker,
                                 c=[p.state if by_hole else p.state_bytes for p in kept], cmap="viridis", norm=norm,
                                 label=label)
    figure.colorbar(drawn, ax=axes, label="state (hole value)" if by_hole else "inference state bytes")
    axes.legend()
    axes.set(xlabel="attention fraction (attention layers / layers)", ylabel="held-out accuracy",
             title="recall against attention fraction", ylim=(-0.02, 1.02))
    figure.tight_layout()
    written.append(out_dir / "recall_vs_attention.png")
    figure.savefig(written[-1], dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    for colour, (label, group) in enumerate(_groups(points)):
        for how, marker, keep in MARKERS:
            kept = [p for p in group if keep(p)]
            if kept:
                axes.scatter([p.state if by_hole else p.state_bytes for p in kept], [p.accuracy for p in kept],
                             marker=marker, color=f"C{colour}", label=f"{label}, {how}")
    axes.set_xscale("log", base=2)
    axes.set(xlabel="state (hole value)" if by_hole else "inference state bytes (planned, at max_len)",
             ylabel="held-out accuracy", title="recall against state size", ylim=(-0.02, 1.02))
    axes.legend(fontsize="small", framealpha=0.6)
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
