"""benchmarks/compare_tunings.py with the GPU timer and inputs stubbed: each candidate runs under the
tuning asked for (the default one for null), over its shape's default backward, in both modes."""

import json

import pytest
import torch

from composer.kernels.semiseparable.tuning import SSDTuning
from composer.kernels.semiseparable.tuning_table import lookup


@pytest.fixture
def compare(load_benchmark):
    return load_benchmark("compare_tunings.py", "compare_tunings")


def test_each_candidate_is_timed_in_both_modes_under_its_own_tiles(compare, monkeypatch, capsys):
    ssd = compare.ssd
    tunings_run = []
    monkeypatch.setattr(ssd, "inputs", lambda *shape, dtype, seed: (
        torch.empty(1, 8, 2, shape[3], dtype=dtype), None, None, torch.empty(1, 8, 1, shape[5], dtype=dtype), None))
    monkeypatch.setattr(ssd, "ours", lambda *args, tuning=None: tunings_run.append(tuning))
    clock = iter(range(1, 100))

    def fake_time_pair(fn, args, mode):
        fn(*args)
        return float(next(clock))

    monkeypatch.setattr(ssd, "time_pair", fake_time_pair)
    fused = {"block_p": 64, "block_q": 32, "fused": True}
    assert compare.main(["label", "4096x128x64", json.dumps([None, fused])]) == 0
    default_run, *fused_runs = tunings_run[:1] + tunings_run[3:]
    assert default_run is None  # the call's own default, picked inside ssd_chunked_triton
    assert all(t.block_q == 32 and t.fused and t.backward is not None for t in fused_runs)
    # the shape's default backward, not the candidate's tiles
    assert fused_runs[0].backward == lookup("*", "bf16", 128, 64).backward != SSDTuning(**fused)
    result = json.loads(capsys.readouterr().out.splitlines()[-1].split(" ", 2)[2])
    assert result == {"(8, 4096, 32, 128, 1, 64) default": {"train_fwd": 2.0, "inference": 3.0},
                      f"(8, 4096, 32, 128, 1, 64) {json.dumps(fused, sort_keys=True)}": {"train_fwd": 5.0,
                                                                                         "inference": 6.0}}


def test_over_default_fields_and_backward_fields_override_the_shape_defaults(compare, monkeypatch, capsys):
    """--over-default: {"state_num_warps": 4} keeps every other field of the shape's pick; "backward" overrides fields
    of its default backward. --modes picks what is timed, --kernels adds the per-kernel profile."""
    ssd = compare.ssd
    tunings_run, timed = [], []
    monkeypatch.setattr(ssd, "inputs", lambda *shape, dtype, seed: (
        torch.empty(1, 8, 2, shape[3], dtype=dtype), None, None, torch.empty(1, 8, 1, shape[5], dtype=dtype), None))
    monkeypatch.setattr(ssd, "ours", lambda *args, tuning=None: tunings_run.append(tuning))

    def fake_time_pair(fn, args, mode):
        fn(*args)
        timed.append(mode)
        return 1.0

    monkeypatch.setattr(ssd, "time_pair", fake_time_pair)
    monkeypatch.setattr(ssd, "kernel_times", lambda fn, args: fn(*args) or {"chunk_scan_bwd_dx": 0.5})
    candidate = {"state_num_warps": 4, "backward": {"dx_block_q": 32, "num_stages": 3}}
    assert compare.main(["label", "4096x128x256", json.dumps([candidate]), "--over-default",
                         "--modes", "fwdbwd", "--kernels"]) == 0
    assert timed == ["fwdbwd", "fwdbwd"]  # the warm-up, then the one mode asked for
    pick = lookup("*", "bf16", 128, 256)
    tuning = tunings_run[0]
    assert tuning.state_num_warps == 4 != pick.state_num_warps and tuning.max_registers == pick.max_registers == 168
    assert tuning.block_n == pick.block_n and tuning.output_block_n == pick.output_block_n
    assert (tuning.backward.dx_block_q, tuning.backward.num_stages) == (32, 3) != (pick.backward.dx_block_q,
                                                                                   pick.backward.num_stages)
    assert tuning.backward.state_num_stages == pick.backward.state_num_stages  # the rest of the default backward
    result = json.loads(capsys.readouterr().out.splitlines()[-1].split(" ", 2)[2])
    assert result == {f"(8, 4096, 32, 128, 1, 256) {json.dumps(candidate, sort_keys=True)}": {
        "fwdbwd": 1.0, "kernels_ms": {"chunk_scan_bwd_dx": 0.5}}}


def test_unknown_modes_are_refused(compare):
    with pytest.raises(SystemExit):
        compare.main(["label", "4096x64x128", "--modes", "train_fwd,backward"])
