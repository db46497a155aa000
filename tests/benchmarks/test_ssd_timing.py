"""benchmarks/ssd.py's timing loop, with the GPU timer stubbed: the peer's times swing between runs, so
--repeats alternates the two sides and reports medians."""

import itertools
import sys

import pytest
import torch


@pytest.fixture
def ssd(load_benchmark, monkeypatch):
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    return load_benchmark("ssd.py", "ssd_benchmark")


def test_repeats_alternate_the_two_sides_per_mode_and_report_medians(ssd, monkeypatch):
    calls, clock = [], itertools.count(1)

    def ours(*a):
        return None

    def fake_time_pair(fn, a, mode):
        calls.append(("composer" if fn is ours else "mamba_ssm", mode))
        return float(next(clock))

    monkeypatch.setattr(ssd, "time_pair", fake_time_pair)
    results = {"timings": []}
    ssd.time_shape((8, 4096, 32, 64, 1, 128), (), ours, results, repeats=3)
    modes = ("inference", "train_fwd", "fwdbwd")
    assert calls == [(side, mode) for mode in modes for _ in range(3) for side in ("composer", "mamba_ssm")]
    row = results["timings"][0]
    # inference took samples 1..6: ours 1, 3, 5 and the peer 2, 4, 6
    assert row["composer_inference_samples_ms"] == [1.0, 3.0, 5.0] and row["composer_inference_ms"] == 3.0
    assert row["mamba_ssm_inference_ms"] == 4.0 and row["inference_speedup"] == pytest.approx(4 / 3)
    assert row["composer_fwdbwd_ms"] == 15.0 and row["mamba_ssm_fwdbwd_ms"] == 16.0


def test_one_repeat_keeps_the_single_time_and_no_samples(ssd, monkeypatch):
    monkeypatch.setattr(ssd, "time_pair", lambda fn, a, mode: 2.0 if mode == "fwdbwd" else 1.0)
    results = {"timings": []}
    ssd.time_shape((8, 4096, 32, 64, 1, 128), (), lambda *a: None, results)
    row = results["timings"][0]
    assert row["composer_fwdbwd_ms"] == 2.0 and row["fwdbwd_speedup"] == 1.0
    assert not any(key.endswith("_samples_ms") for key in row)


def test_checks_without_the_peer_check_ours_alone(ssd, monkeypatch):
    """--no-peer-checks: both of our forms in bf16 and ours in fp32 at each check shape, never the peer."""
    checked = []
    monkeypatch.setattr(ssd, "check", lambda fn, shape, dtype, seed: checked.append((fn, dtype)) or [0.0] * 6)
    results = {"checks": []}
    ssd.run_checks(results, with_peer=False)
    assert ssd.peer not in {fn for fn, _ in checked}
    assert [fn for fn, dtype in checked if dtype == torch.bfloat16] == [ssd.ours, ssd.fused_ours] * 3
    assert [fn for fn, dtype in checked if dtype == torch.float32] == [ssd.ours] * 3
    assert {row["impl"] for row in results["checks"]} == {"composer", "composer_fused"}
    ssd.run_checks(results)
    assert checked.count((ssd.peer, torch.bfloat16)) == 3  # by default the peer is checked too


def test_peer_retune_tunes_the_peer_again_before_each_of_its_samples(ssd, monkeypatch):
    """--peer-retune: the peer's autotuners forget their picks and run once untimed before each of its
    samples; the row adds its fastest sample and the speed-up against that."""
    events, clock = [], itertools.count(1)

    def ours(*a):
        return None

    def fake_time_pair(fn, a, mode):
        events.append(("time", "composer" if fn is ours else "mamba_ssm", mode))
        return float(next(clock))

    def fake_mode_call(fn, a, mode):
        return (lambda: events.append(("tune", mode))), None

    monkeypatch.setattr(ssd, "time_pair", fake_time_pair)
    monkeypatch.setattr(ssd, "mode_call", fake_mode_call)
    monkeypatch.setattr(ssd, "forget_autotuning", lambda: events.append(("forget",)) or 25)
    results = {"timings": []}
    ssd.time_shape((8, 4096, 32, 64, 1, 128), (), ours, results, repeats=2, peer_retune=True)
    assert events[:6] == [("time", "composer", "inference"), ("forget",), ("tune", "inference"),
                          ("time", "mamba_ssm", "inference"), ("time", "composer", "inference"), ("forget",)]
    assert events.count(("forget",)) == 6 and events.count(("tune", "fwdbwd")) == 2
    row = results["timings"][0]
    # inference: ours 1, 3 (median 2); the peer 2, 4 (median 3, fastest 2)
    assert row["mamba_ssm_inference_best_ms"] == 2.0 and row["inference_speedup_vs_best"] == 1.0
    assert row["inference_speedup"] == 1.5


def test_forget_autotuning_clears_the_package_autotuners_only(load_benchmark, monkeypatch):
    import types

    import triton
    import triton.language as tl

    peers = load_benchmark("peers.py", "peers_benchmark")

    def tuner():
        @triton.autotune(configs=[triton.Config({"BLOCK": 16})], key=["n"])
        @triton.jit
        def kernel(x_ptr, n, BLOCK: tl.constexpr):
            pass
        kernel.cache[(16,)] = kernel.configs[0]  # as if it had tuned once
        return kernel

    ours, theirs = tuner(), tuner()
    for name, value in (("fake_peer.ops", ours), ("fake_peer.again", ours), ("other_package", theirs)):
        module = types.ModuleType(name)
        module.kernel = value
        monkeypatch.setitem(sys.modules, name, module)
    assert peers.forget_autotuning("fake_peer") == 1  # one autotuner, reached from two modules
    assert ours.cache == {} and theirs.cache != {}


def test_profile_prints_each_sides_kernel_times_as_a_json_line(ssd, monkeypatch, capsys):
    """--profile: one line per implementation, its kernels' mean device times (compare_tunings' --kernels too)."""
    import json

    profiled = []
    monkeypatch.setattr(ssd, "inputs", lambda *shape, dtype, seed: ("x",))
    monkeypatch.setattr(ssd, "ours", lambda *a, tuning=None: profiled.append(("composer", tuning)))
    monkeypatch.setattr(ssd, "peer", lambda *a: profiled.append(("mamba_ssm", None)))
    monkeypatch.setattr(ssd, "kernel_times", lambda fn, a: fn(*a) or {"kernel": float(len(profiled))})
    ssd.profile((8, 2048, 32, 128, 1, 256), "tuning")
    assert profiled == [("composer", "tuning"), ("mamba_ssm", None)]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["composer", "mamba_ssm"]
    assert [json.loads(line[line.index("{"):]) for line in lines] == [{"kernel": 1.0}, {"kernel": 2.0}]


def test_shapes_take_groups_and_a_batch_beside_the_old_syntax(ssd):
    """'LxPxN' stays b=8 and one group; 'LxPxNxG' names the groups of B and C, '@b' the batch."""
    assert ssd.parse_shapes("4096x64x128") == [(8, 4096, 32, 64, 1, 128)]
    assert ssd.parse_shapes("32768x64x128x8@2,8192x128x256x8,2048x64x64@4,") == [
        (2, 32768, 32, 64, 8, 128), (8, 8192, 32, 128, 8, 256), (4, 2048, 32, 64, 1, 64)]
    for bad in ("4096x64x128x3", "4096x64x128x8x2"):  # 3 does not divide H = 32; too many sizes
        with pytest.raises(ValueError, match="LxPxNxG"):
            ssd.parse_shapes(bad)
    assert all(shape[4] == 8 and shape[0] * shape[1] == 65536 for shape in ssd.GROUPS_TABLE)


def test_ab_versions_compares_the_median_of_each_versions_repeats(load_benchmark, tmp_path, capsys):
    import json

    ab_versions = load_benchmark("ab_versions.py", "ab_versions_benchmark")

    path = tmp_path / "ab.jsonl"
    rows = [("old", 2.0), ("new", 1.0), ("old", 4.0), ("new", 3.0), ("old", 3.0), ("new", 2.0)]
    path.write_text("".join(json.dumps({"label": label, "shape": [8, 2048, 32, 64, 1, 64], "mode": "fwdbwd",
                                        "ms": ms}) + "\n" for label, ms in rows))
    ab_versions.compare(str(path), "old", "new")
    line = capsys.readouterr().out.splitlines()[1]
    assert line.split()[-3:] == ["3.0000", "2.0000", "0.667"]
