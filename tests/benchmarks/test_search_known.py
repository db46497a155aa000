"""benchmarks/search_known.py end to end on the CPU at toy size: probe, search, report, known-results table."""

import json
import sys
from pathlib import Path


def test_the_driver_probes_searches_and_reports(load_benchmark, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "search"))  # the search tests' tiny specs
    from search_specs import TINY_SPEC, trained
    driver = load_benchmark("search_known.py", "search_known_under_test")
    spec = tmp_path / "tiny.mix"
    spec.write_text(TINY_SPEC.format(settings=trained(steps=3) + "\n    compile = default"))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["search_known.py", "--spec", str(spec), "--out", str(out), "--trials", "3",
                                      "--workers", "1", "--device", "cpu", "--compile-modes", "none",
                                      "--probe-steps", "2", "--probe-warmup", "1", "--budget-s", "300"])
    assert driver.main() == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compile"] == "none" and "step_ms" in summary["probe"]["none"]
    assert "compile = none" in (out / "tiny.mix").read_text()  # the trials' copy takes the probe's pick
    assert summary["trials_finished"] == 3 and "stopped" not in summary
    assert set(summary["best_by_attention_fraction"]) <= {"0.0", "0.5", "1.0"}
    for name in ("report.html", "recall.csv", "recall_vs_attention.png", "recall_vs_state.png"):
        assert (out / "search" / name).exists()

    # a second call continues the stored study: no probe, more trials, seconds counted over both calls
    again = tmp_path / "again"
    monkeypatch.setattr(sys, "argv", ["search_known.py", "--spec", str(spec), "--out", str(again), "--trials", "5",
                                      "--workers", "1", "--device", "cpu", "--resume", str(out), "--budget-s", "300"])
    assert driver.main() == 0
    resumed = json.loads((again / "summary.json").read_text())
    assert resumed["trials_finished"] == 5 and resumed["probe"] == summary["probe"]
    assert resumed["resumed_from"] == {"search_s": summary["search_s"], "trials_finished": 3}
    assert resumed["search_s"] > summary["search_s"] and not (again / "probe.json").exists()

    # a committed result folder holds study.db beside summary.json (benchmarks/results/search_known_*/)
    flat = tmp_path / "flat"
    flat.mkdir()
    for source, name in ((again / "summary.json", "summary.json"), (again / "search" / "study.db", "study.db")):
        (flat / name).write_bytes(source.read_bytes())
    monkeypatch.setattr(sys, "argv", ["search_known.py", "--spec", str(spec), "--out", str(tmp_path / "third"),
                                      "--trials", "6", "--workers", "1", "--device", "cpu", "--resume", str(flat),
                                      "--budget-s", "300"])
    assert driver.main() == 0
    assert json.loads((tmp_path / "third" / "summary.json").read_text())["trials_finished"] == 6


def test_with_compile_sets_or_adds_the_setting(load_benchmark):
    driver = load_benchmark("search_known.py", "search_known_under_test")
    assert "    compile = reduce_overhead\n" in driver.with_compile("  search {\n    compile = none\n  }", "reduce_overhead")
    assert driver.with_compile("  search {\n    steps = 3\n  }", "default") == \
        "  search {\n    compile = default\n    steps = 3\n  }"
    timed = {"none": {"step_ms": 10.0, "start_s": 1.0}, "reduce_overhead": {"step_ms": 2.0, "start_s": 40.0}}
    assert driver.pick(timed, 3000) == "none"  # 31 s a trial against 46: compiling does not pay back
    assert driver.pick(timed, 30000) == "reduce_overhead"  # 301 s against 100
    assert driver.pick({"none": {"step_ms": 10.0, "start_s": 1.0}, "reduce_overhead": {"error": "x"}}, 3000) == "none"
