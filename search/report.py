"""What a finished (or interrupted) search tells a person: the Pareto front as a table,
how the trials ended, which holes mattered, an HTML page of plots, and the best specs
as ready-to-use .mix files.

Everything is read from the study, so a report can be made again from the storage
alone, by any process, while workers elsewhere are still running.
"""

from __future__ import annotations

import html
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable

import optuna
import optuna.visualization as vis
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from composer.grammar.writer import format_call, to_mix
from composer.search.monitor import outcome_text
from composer.search.objectives import OBJECTIVES, Objective
from composer.search.study import counted_trials
from composer.spec import Spec

# Measures every trial records (see composer.search.trial), shown beside the objectives.
CONTEXT_MEASURES = ("params", "state_bytes")


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto-optimal trials (one objective: the best trial), best first objective first."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(study.best_trials, key=lambda t: t.values[0], reverse=maximize)


def _param_text(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def front_table(study: optuna.Study, objectives: tuple[Objective, ...]) -> Table:
    """One row a Pareto-optimal trial: objectives, size and state, layers, the holes' values."""
    names = [o.name for o in objectives]
    context = [OBJECTIVES[name] for name in CONTEXT_MEASURES if name not in names]
    trials = front(study)
    holes = sorted({name for trial in trials for name in trial.params})
    table = Table(title=f"{'Pareto front' if len(objectives) > 1 else 'best trial'} of study `{study.study_name}`")
    for column in ["trial"] + names + [o.name for o in context]:
        table.add_column(column, justify="right")
    table.add_column("layers")
    for hole in holes:
        table.add_column(hole, justify="right")
    for trial in trials:
        table.add_row(str(trial.number), *[o.format(v) for o, v in zip(objectives, trial.values)],
                      *[o.format(trial.user_attrs[o.name]) if o.name in trial.user_attrs else "-" for o in context],
                      trial.user_attrs.get("layers", ""),
                      *[_param_text(trial.params.get(hole, "")) for hole in holes])
    return table


def outcomes(study: optuna.Study) -> str:
    """`12 complete, 3 stopped early, 2 rejected, 1 failed`: how the counted trials ended."""
    kinds = Counter()
    for trial in counted_trials(study.get_trials(deepcopy=False)):
        if trial.state == TrialState.PRUNED:
            kinds["rejected" if "rejected" in trial.user_attrs else "stopped early"] += 1
        else:
            kinds[{TrialState.COMPLETE: "complete", TrialState.FAIL: "failed"}.get(trial.state, "unfinished")] += 1
    order = ("complete", "stopped early", "rejected", "failed", "unfinished")
    return ", ".join(f"{kinds[kind]} {kind}" for kind in order if kinds[kind])


def problems_table(study: optuna.Study, objectives: tuple[Objective, ...]) -> Table | None:
    """Rejected and failed trials grouped by reason, so a person sees what the space got wrong."""
    reasons = Counter(outcome_text(t, objectives) for t in counted_trials(study.get_trials(deepcopy=False))
                      if t.state == TrialState.FAIL or "rejected" in t.user_attrs)
    if not reasons:
        return None
    table = Table(title="rejected and failed trials")
    table.add_column("trials", justify="right")
    table.add_column("reason")
    for reason, count in reasons.most_common():
        table.add_row(str(count), reason)
    return table


def _target(index: int) -> Callable[[FrozenTrial], float]:
    return lambda trial: trial.values[index]


def _loss(index: int, objective: Objective) -> Callable[[FrozenTrial], float]:
    """The objective as PED-ANOVA reads a target: lower is better."""
    sign = -1.0 if objective.direction == "maximize" else 1.0
    return lambda trial: sign * trial.values[index]


def _importance_evaluator(complete: int) -> optuna.importance.PedAnovaImportanceEvaluator:
    """PED-ANOVA asks for at least five trials in the top quantile it explains; small studies widen it."""
    return optuna.importance.PedAnovaImportanceEvaluator(target_quantile=min(0.5, max(0.1, 5 / max(1, complete))))


def importances(study: optuna.Study, objectives: tuple[Objective, ...]) -> dict[str, dict[str, float] | str]:
    """Per objective: each hole's share of the variation (optuna.importance), or why there is none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [name for name in {n for t in complete for n in t.params}
              if len({repr(t.params.get(name)) for t in complete}) > 1]
    result: dict[str, dict[str, float] | str] = {}
    for index, objective in enumerate(objectives):
        if len(complete) < 2 or not varied:
            result[objective.name] = (f"needs at least two complete trials that differ in a hole "
                                      f"({len(complete)} complete so far)")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result[objective.name] = optuna.importance.get_param_importances(
                    study, evaluator=_importance_evaluator(len(complete)), target=_loss(index, objective),
                    params=sorted(varied))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            result[objective.name] = f"not computable: {exc}"
    return result


def importance_table(found: dict[str, dict[str, float] | str]) -> Table:
    table = Table(title="hole importances (share of each objective's variation)")
    table.add_column("objective")
    table.add_column("hole")
    table.add_column("importance", justify="right")
    for objective, shares in found.items():
        if isinstance(shares, str):
            table.add_row(objective, "-", shares)
            continue
        for hole, share in shares.items():
            table.add_row(objective, hole, f"{share:.2f}")
    return table


def _figures(study: optuna.Study, objectives: tuple[Objective, ...]) -> list[tuple[str, Callable]]:
    """(title, function making the plotly figure) for every plot the report shows."""
    names = [o.name for o in objectives]
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    figures: list[tuple[str, Callable]] = []
    if len(objectives) in (2, 3):
        figures.append(("Pareto front", lambda: vis.plot_pareto_front(study, target_names=names)))
    for index, objective in enumerate(objectives):
        def per_objective(plot, index=index, name=objective.name):
            return lambda: plot(study, target=_target(index), target_name=name)

        def importance_plot(index=index, objective=objective):
            return vis.plot_param_importances(study, evaluator=_importance_evaluator(complete),
                                              target=_loss(index, objective), target_name=objective.name)
        figures += [(f"optimisation history: {objective.name}", per_objective(vis.plot_optimization_history)),
                    (f"hole importances: {objective.name}", importance_plot),
                    (f"parallel coordinates: {objective.name}", per_objective(vis.plot_parallel_coordinate))]
    return figures


def write_html(study: optuna.Study, objectives: tuple[Objective, ...], path: Path, summary: str) -> None:
    """One self-contained page: plotly's script inlined once, then every figure that can be drawn."""
    sections, script_included = [], False
    for title, make in _figures(study, objectives):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figure = make()
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            sections.append(f"<h2>{html.escape(title)}</h2><p>not available: {html.escape(str(exc))}</p>")
            continue
        body = figure.to_html(full_html=False, include_plotlyjs=not script_included)
        script_included = True
        sections.append(f"<h2>{html.escape(title)}</h2>{body}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>search {html.escape(study.study_name)}</title></head>\n<body>"
        f"<h1>study {html.escape(study.study_name)}</h1><p>{html.escape(summary)}</p>\n"
        + "\n".join(sections) + "\n</body></html>\n", encoding="utf-8")


def _spec_header(trial: FrozenTrial, objectives: tuple[Objective, ...], study_name: str, task_text: str) -> str:
    measures = ", ".join(f"{o.name} {o.format(v)}" for o, v in zip(objectives, trial.values))
    lines = [f"trial {trial.number} of study `{study_name}`: {measures}"]
    train = trial.user_attrs.get("train")
    if train:
        lines.append(f"trained on {task_text}: " + ", ".join(f"{key} {value}" for key, value in train.items()
                                                              if value is not None))
    return "\n".join(lines)


def write_best_specs(study: optuna.Study, objectives: tuple[Objective, ...], task: dict, out_dir: Path) -> list[Path]:
    """Each Pareto-optimal trial's concrete spec as `<model>_trial<n>.mix`, with how it scored, and its trained
    weights beside it as `<model>_trial<n>.safetensors` when the trial kept them (--save-weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for trial in front(study):
        spec = Spec.model_validate(trial.user_attrs["spec"])
        spec = spec.model_copy(update={"name": f"{spec.name}_trial{trial.number}"})
        path = out_dir / f"{spec.name}.mix"
        path.write_text(to_mix(spec, header=_spec_header(trial, objectives, study.study_name, format_call(task))))
        written.append(path)
        weights = Path(trial.user_attrs.get("weights", ""))
        if trial.user_attrs.get("weights") and weights.is_file():
            shutil.copyfile(weights, path.with_suffix(".safetensors"))
            written.append(path.with_suffix(".safetensors"))
    return written
