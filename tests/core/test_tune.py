"""`mixc tune`: every candidate checked against the plan's tuning, the fastest written as an entry the plan reads."""

import json

import pytest

from composer.cli import main
from composer.kernels.semiseparable import tuning_table
from composer.kernels.semiseparable.plan import ScanSizes, plan_scan

SPEC = """model tiny {
  d_model = 32
  vocab = 16
  max_len = 64
  block ssd { mixer = semiseparable(state = 16, head_dim = 16, chunk = 16) }
  layers = [ssd]
}
"""


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    tuning_table._entries.cache_clear()
    path = tmp_path / "tiny.mix"
    path.write_text(SPEC)
    monkeypatch.setenv("COMPOSER_TUNINGS", str(tmp_path / "tunings.json"))
    yield path
    tuning_table._entries.cache_clear()


def test_mixc_tune_lists_each_candidate_and_writes_the_winner(spec_file, monkeypatch, capsys):
    from composer.kernels.semiseparable import tune as tuner

    monkeypatch.setattr(tuner, "CANDIDATE_FIELDS", {"num_stages": (2,)})
    times = iter([3.0, 2.0])  # under the interpreter a clock times the interpreter: the test states the times

    def measure(step, device):
        step()
        return next(times)
    monkeypatch.setattr(tuner, "default_measure", measure)
    assert main(["tune", str(spec_file), "--precision", "fp32", "--batch-size", "1", "--seq-len", "40"]) == 0
    out = capsys.readouterr().out
    assert "scan P=16 N=16 H=4 G=1 chunk=16 (blocks ssd) at b=1, L=40, fp32, on interpreter:" in out
    assert "3.000 ms" in out and "kept SSDTuning(" in out
    [entry] = json.loads((spec_file.parent / "tunings.json").read_text())["entries"]
    assert entry["tuning"]["num_stages"] == 2 and entry["operand"] == "fp32"
    assert tuning_table.lookup("interpreter", "fp32", 16, 16).num_stages == 2


def test_tune_checks_each_candidate_and_keeps_the_fastest(spec_file, monkeypatch):
    from composer.kernels.semiseparable import tune as tuner
    from composer.loader import load
    from composer.resolve import resolve
    from composer.tune import tune

    monkeypatch.setattr(tuner, "CANDIDATE_FIELDS", {"block_q": (16,), "num_warps": (8,)})
    times = iter([5.0, 1.0])  # the plan's tuning, then the candidate with 8 warps

    def measure(step, device):
        step()
        return next(times)
    lines = []
    [tuned] = tune(resolve(load(spec_file)), "fp32", batch=1, seq_len=40, measure=measure, say=lines.append)
    assert [m.outcome for m in tuned.results] == ["ok", "ok"]
    assert tuned.entry["gpu"] == "interpreter" and tuned.entry["tuning"]["num_warps"] == 8
    assert "1.000 ms forward+backward at b=1, L=40" in tuned.entry["measured"]
    sizes = ScanSizes(head_dim=16, state=16, chunk=16, heads=4, groups=1, decays=True, has_dt=True, has_D=True)
    assert plan_scan(sizes, None, gpu="interpreter").select("fp32", True, 1).forward["NUM_WARPS"] == 8
    assert plan_scan(sizes, None, gpu="NVIDIA H200").select("fp32", True, 1).forward["NUM_WARPS"] == 4


def test_a_wrong_candidate_is_never_kept(spec_file, monkeypatch):
    from composer.kernels.semiseparable import tune as tuner
    from composer.loader import load
    from composer.resolve import resolve
    from composer.tune import tune

    monkeypatch.setattr(tuner, "CANDIDATE_FIELDS", {"num_warps": (8,)})
    real_run = tuner._run
    monkeypatch.setattr(tuner, "_run", lambda tuning, sizes, inputs: [
        t * (2 if tuning.num_warps == 8 else 1) for t in real_run(tuning, sizes, inputs)])
    [tuned] = tune(resolve(load(spec_file)), "fp32", batch=1, seq_len=40, measure=lambda step, device: 1.0,
                   say=lambda line: None)
    assert tuned.results[1].outcome.startswith("wrong: y differs") and tuned.entry is None


def test_tune_without_a_gpu_says_so(spec_file, monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert main(["tune", str(spec_file)]) == 1
    assert "mixc tune measures the kernels on a CUDA GPU and none is visible here" in capsys.readouterr().err
