"""The known-results search on one GPU in one call: probe a trial's step, run the search, report what it found.

    . benchmarks/device_setup.sh && cd /tmp && python3 $R/benchmarks/search_known.py --out $OUT [--budget-s 540]

1. probe: the spec's own point (as written) trains under each --compile-modes mode in this process, for
   --probe-warmup steps and again for --probe-steps more: a step's seconds and the start-up (building,
   compiling, autotuning) pick the trials' `compile` setting (the shortest trial, start-up included).
2. search: `mixc search` on a copy of the spec with that setting, --trials and --workers, starting no trial
   once one would no longer fit the budget less --report-s (`--time-limit`), and stopped (SIGINT: the study is
   kept) if a trial still overruns it.
3. report: the search's report from the stored study (HTML, best specs, recall.csv and the two PNGs), then the
   known-results table: the best accuracy at each attention fraction, and the pure SSM's at each state.
Everything lands under --out: probe.json, the search's folder, summary.json.

    ... search_known.py --out $OUT --resume EARLIER_OUT [--trials 60]

continues the study an earlier call left in EARLIER_OUT (a search sized to two GPU leases): no probe (the earlier
pick stands), more trials queued up to --trials, and trials an hour counted over both calls' search seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

SPEC = Path(__file__).resolve().parent / "search_known.mix"


def probe(spec_path: Path, modes: list[str], steps: int, warmup: int, device: str) -> dict:
    """Each mode's seconds a step of the spec's own point, and its start-up: the point trained for `warmup`
    steps, again for `warmup` and for `warmup + steps`, fresh each time. The last two differ by `steps` steady
    steps; the first run, less its steps, is the start-up a worker process pays once (CUDA context, the
    kernels' compiling and autotuning, torch.compile's graphs). The first run is not one of the two differenced:
    its one-time costs made a 50-step difference come out negative on one H200."""
    import torch

    from composer import load
    from composer.search.settings import read_settings
    from composer.search.train import train

    spec = load(spec_path)
    settings = read_settings(spec)
    rows = {}
    for mode in modes:
        seconds = []
        try:
            for count in (warmup, warmup, warmup + steps):
                torch._dynamo.reset()
                begin = time.perf_counter()
                train(spec, settings.task, dataclasses.replace(settings.train, steps=count, compile=mode,
                                                               eval_batches=1), device=device)
                seconds.append(time.perf_counter() - begin)
        except Exception as exc:  # noqa: BLE001  (a mode that fails to compile is a result)
            rows[mode] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            print(f"probe {mode}: {rows[mode]['error']}", flush=True)
            continue
        step_s = (seconds[2] - seconds[1]) / steps
        rows[mode] = {"step_ms": round(1e3 * step_s, 2), "start_s": round(seconds[0] - warmup * step_s, 2)}
        print(f"probe {mode}: {rows[mode]}", flush=True)
    return rows


def pick(rows: dict, trial_steps: int) -> str:
    """The mode whose start-up plus a trial's steps is shortest."""
    usable = {mode: row for mode, row in rows.items() if "step_ms" in row}
    if not usable:
        return "none"
    return min(usable, key=lambda mode: usable[mode]["start_s"] + trial_steps * usable[mode]["step_ms"] / 1e3)


def with_compile(text: str, mode: str) -> str:
    """The spec text with its search's `compile` setting set to `mode`."""
    if re.search(r"^\s*compile\s*=", text, re.M):
        return re.sub(r"^(\s*compile\s*=\s*)\S+", rf"\g<1>{mode}", text, count=1, flags=re.M)
    return re.sub(r"^(\s*search\s*\{\n)", rf"\g<1>    compile = {mode}\n", text, count=1, flags=re.M)


def known_results(points) -> dict:
    """The best accuracy at each attention fraction, and the pure SSM's best at each state, of the search's
    recall points (search/figures.py: what recall.csv and the PNGs hold; a trial Hyperband stopped early counts
    at its last evaluation, as most pure-SSM points are stopped early)."""
    by_fraction, pure_by_state = defaultdict(float), defaultdict(float)
    for point in points:
        fraction = round(point.attention_fraction, 3)
        by_fraction[fraction] = max(by_fraction[fraction], point.accuracy)
        if fraction == 0 and point.state is not None:
            pure_by_state[point.state] = max(pure_by_state[point.state], point.accuracy)
    return {"best_by_attention_fraction": dict(sorted(by_fraction.items())),
            "pure_ssm_best_by_state": dict(sorted(pure_by_state.items()))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--budget-s", type=float, default=540, help="the whole run's seconds")
    parser.add_argument("--report-s", type=float, default=60, help="seconds kept for the report")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--device", default=None, help="the trials' device (default: cuda when there is one)")
    parser.add_argument("--compile-modes", default="none,reduce_overhead")
    parser.add_argument("--probe-steps", type=int, default=60)
    parser.add_argument("--probe-warmup", type=int, default=20)
    parser.add_argument("--resume", type=Path, default=None,
                        help="an earlier call's --out: continue its study (no probe; its pick stands)")
    args = parser.parse_args()
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                     "argv": sys.argv[1:]}

    from composer.search.run import load_search
    text = args.spec.read_text()
    trial_steps = load_search(args.spec, None)[1].train.steps
    search_out = args.out / "search"
    earlier: dict = {}
    if args.resume:
        earlier = json.loads((args.resume / "summary.json").read_text())
        search_out.mkdir(parents=True, exist_ok=True)
        # an earlier call's --out holds search/study.db; a committed result folder (benchmarks/results/...) study.db
        stored = [path for path in (args.resume / "search" / "study.db", args.resume / "study.db") if path.is_file()]
        if not stored:
            parser.error(f"--resume {args.resume}: no search/study.db or study.db there")
        shutil.copyfile(stored[0], search_out / "study.db")
        summary["probe"], summary["compile"] = earlier["probe"], earlier["compile"]
        summary["resumed_from"] = {key: earlier[key] for key in ("search_s", "trials_finished") if key in earlier}
    else:
        summary["probe"] = probe(args.spec, args.compile_modes.split(","), args.probe_steps, args.probe_warmup,
                                 device)
        summary["compile"] = pick(summary["probe"], trial_steps)
        (args.out / "probe.json").write_text(json.dumps(summary["probe"], indent=1))
    print(f"trials compile = {summary['compile']}", flush=True)

    spec_copy = args.out / args.spec.name
    spec_copy.write_text(with_compile(text, summary["compile"]))
    left = args.budget_s - args.report_s - (time.time() - started)
    picked = summary["probe"].get(summary["compile"], {})
    one_trial_s = picked.get("start_s", 0) + trial_steps * picked.get("step_ms", 0) / 1e3
    # no trial starts once a whole one would no longer fit (--time-limit); SIGINT below only if one overruns
    command = [sys.executable, "-m", "composer.cli", "search", str(spec_copy), "--trials", str(args.trials),
               "--workers", args.workers, "--out", str(search_out),
               "--time-limit", f"{max(1.0, left - one_trial_s):.0f}"] \
        + ["--device", args.device] * bool(args.device) + ["--resume"] * bool(args.resume)
    search_start = time.time()
    search = subprocess.Popen(command)
    try:
        search.wait(timeout=max(1.0, left))
    except subprocess.TimeoutExpired:
        search.send_signal(signal.SIGINT)  # the workers put their trials back; the study is kept
        search.wait(timeout=args.report_s / 2)
        summary["stopped"] = f"the budget ran out after {left:.0f} s of search"
    # the search's own seconds (this call's and any earlier call's), what trials an hour counts over
    summary["search_s"] = round(time.time() - search_start + earlier.get("search_s", 0), 1)

    from rich.console import Console

    from composer.search.figures import recall_points
    from composer.search.run import report
    from composer.search.study import StudyConfig, counted_trials, load_study, storage_url_for
    spec, settings = load_search(spec_copy, None)
    study = load_study(StudyConfig(storage_url_for(str(search_out / "study.db")), spec.name), settings)
    if "stopped" in summary:  # the search printed no report
        report(study, settings, search_out, Console())
    finished = [t for t in counted_trials(study.trials()) if t.state.is_finished()]
    summary["trials_finished"] = len(finished)
    summary["trials_an_hour"] = round(len(finished) * 3600 / max(summary["search_s"], 1e-9), 1)
    summary.update(known_results(recall_points(study.study, settings.objectives)))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
