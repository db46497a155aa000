"""The measured tunings are data: the built-in file, the user's entries first, a stated rule where none fits."""

import json

import pytest

from composer.kernels.semiseparable import tuning_table
from composer.kernels.semiseparable.plan import ScanSizes, plan_scan, tunings_by_batch
from composer.kernels.semiseparable.tuning import DEFAULT_TUNING, FP32_TUNING, SSDTuning

SIZES = ScanSizes(head_dim=64, state=128, chunk=256, heads=32, groups=1, decays=True, has_dt=True)


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    path = tmp_path / "tunings.json"
    monkeypatch.setenv("COMPOSER_TUNINGS", str(path))
    tuning_table._entries.cache_clear()
    yield path
    tuning_table._entries.cache_clear()


def test_every_built_in_entry_reads_as_a_tuning():
    entries = json.loads(tuning_table.BUILT_IN.read_text())["entries"]
    assert len(entries) >= 7
    for entry in entries:
        assert entry["regime"] in tuning_table.REGIMES and entry["measured"]
        tuning = tuning_table.tuning_from(entry["tuning"])
        assert tuning_table.tuning_fields(tuning) == entry["tuning"]  # the file holds only what differs


def test_a_shape_with_no_entry_takes_the_stated_rule(user_file):
    odd = ScanSizes(head_dim=32, state=64, chunk=64, heads=4, groups=1, decays=False)
    assert tunings_by_batch(odd, "bf16", True, 132) == [(1, DEFAULT_TUNING, "")]
    assert tunings_by_batch(SIZES, "fp32", True, 132) == [(1, FP32_TUNING, "")]
    assert plan_scan(odd, 132).select("bf16", True, 1).forward["BLOCK_Q"] == 32


def test_user_entries_for_this_gpu_come_before_the_built_in_ones(user_file):
    mine = SSDTuning(block_p=32, block_q=32, num_warps=8, fused=False)
    tuning_table.write_entries(user_file, [{"gpu": "NVIDIA H200", "operand": "bf16", "head_dim": 64, "state": 128,
                                            "regime": "any", "tuning": tuning_table.tuning_fields(mine),
                                            "measured": "a test"}])
    assert tuning_table.lookup("NVIDIA H200", "bf16", 64, 128) == mine
    assert tuning_table.lookup("NVIDIA H100", "bf16", 64, 128) != mine  # another GPU keeps the built-in entry
    assert tuning_table.lookup("NVIDIA H200", "fp16", 64, 128) != mine  # and another operand
    plan = plan_scan(SIZES, 132, gpu="NVIDIA H200")
    assert plan.select("bf16", True, 8).forward["NUM_WARPS"] == 8
    again = SSDTuning(block_p=32, block_q=64, fused=False)  # the same key replaces, never duplicates
    tuning_table.write_entries(user_file, [{"gpu": "NVIDIA H200", "operand": "bf16", "head_dim": 64, "state": 128,
                                            "regime": "any", "tuning": tuning_table.tuning_fields(again),
                                            "measured": "a test"}])
    assert len(json.loads(user_file.read_text())["entries"]) == 1
    assert tuning_table.lookup("NVIDIA H200", "bf16", 64, 128) == again


def test_a_broken_user_file_is_named_in_the_error(user_file):
    user_file.write_text('{"entries": [{"gpu": "*", "operand": "bf16", "head_dim": 64, "state": 64, '
                         '"regime": "any", "tuning": {"block_qq": 32}}]}')
    with pytest.raises(ValueError, match=r"tunings.json: 64x64: unknown SSDTuning fields \['block_qq'\]"):
        tuning_table.lookup("*", "bf16", 64, 64)
    user_file.write_text("not json")
    with pytest.raises(ValueError, match="not a tunings file"):
        tuning_table.lookup("*", "bf16", 64, 64)
