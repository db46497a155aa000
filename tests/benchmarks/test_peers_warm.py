"""peers.keep_config_share and warm_compile_cache: each warming child keeps its own share of every autotuner's
configurations, the shares together are all of them, and the children run at once with their rows returned."""

import sys
import types

import pytest
import triton
import triton.language as tl


def _package(name, sizes):
    """A package `name` holding one autotuned kernel with a configuration per size (the test loads it into
    sys.modules through monkeypatch, so no other test sees it)."""
    @triton.jit
    def kernel(x, n, BLOCK: tl.constexpr):
        pass
    module = types.ModuleType(name)
    module.kernel = triton.autotune([triton.Config({"BLOCK": size}) for size in sizes], key=["n"])(kernel)
    return module


def test_the_shares_split_every_autotuner_s_configurations(load_benchmark, monkeypatch):
    peers = load_benchmark("peers.py", "peers_under_test")
    sizes = [16, 32, 64, 128, 256, 512, 1024]
    shares = []
    for index in range(3):
        module = _package("fake_share_peer", sizes)
        monkeypatch.setitem(sys.modules, "fake_share_peer", module)
        assert peers.keep_config_share("fake_share_peer", index, 3) == len(sizes[index::3])
        shares.append([config.kwargs["BLOCK"] for config in module.kernel.configs])
    assert shares == [[16, 128, 1024], [32, 256], [64, 512]]
    assert sorted(sum(shares, [])) == sizes


def test_a_tuner_with_fewer_configurations_than_shares_keeps_one(load_benchmark, monkeypatch):
    peers = load_benchmark("peers.py", "peers_under_test")
    module = _package("fake_share_peer_small", [16, 32])
    monkeypatch.setitem(sys.modules, "fake_share_peer_small", module)
    assert peers.keep_config_share("fake_share_peer_small", 3, 4) == 1
    assert [config.kwargs["BLOCK"] for config in module.kernel.configs] == [32]  # configs[3 % 2]


def test_compile_only_runs_each_configuration_once_and_stores_no_timings(load_benchmark, monkeypatch):
    import torch
    peers = load_benchmark("peers.py", "peers_under_test")

    @triton.jit
    def count(counter, n, BLOCK: tl.constexpr):
        tl.atomic_add(counter, 1)
    module = types.ModuleType("fake_compile_peer")
    module.kernel = triton.autotune([triton.Config({"BLOCK": size}) for size in (16, 32, 64)], key=["n"],
                                    cache_results=True)(count)
    monkeypatch.setitem(sys.modules, "fake_compile_peer", module)
    assert peers.compile_only("fake_compile_peer") == 1 and module.kernel.cache_results is False
    counter = torch.zeros(1, dtype=torch.int32)
    module.kernel[(1,)](counter, 5)
    # one run a configuration (the "tuning"), then the call itself: a timed tuning would run each many times
    assert counter.item() == 3 + 1


@pytest.mark.parametrize("text", ["3/3", "1", "a/2", "-1/2"])
def test_a_share_is_written_i_of_n(load_benchmark, text):
    peers = load_benchmark("peers.py", "peers_under_test")
    with pytest.raises(ValueError, match="--warm-share takes I/N"):
        peers.parse_share(text)
    assert peers.parse_share("2/14") == (2, 14)


def test_warm_compile_cache_runs_every_share_and_returns_their_rows(load_benchmark, tmp_path):
    peers = load_benchmark("peers.py", "peers_under_test")
    child = tmp_path / "child.py"
    child.write_text("import json, sys, time\n"
                     "share = sys.argv[sys.argv.index('--warm-share') + 1]\n"
                     "time.sleep(0.5)\n"
                     "print('ROW ' + json.dumps({'share': share, 'extra': sys.argv[1]}), flush=True)\n")
    rows = peers.warm_compile_cache([str(child), "given"], 4, timeout_s=60)
    assert rows == [{"share": f"{i}/4", "extra": "given"} for i in range(4)]


def test_a_tuner_under_heuristics_is_found_split_and_compiled_only(load_benchmark, monkeypatch):
    """fla writes @triton.heuristics over @triton.autotune: the module attribute is the Heuristics, and its
    tuner must still take its share and compile without timing."""
    peers = load_benchmark("peers.py", "peers_under_test")

    @triton.jit
    def kernel(x, n, BLOCK: tl.constexpr, EVEN: tl.constexpr):
        pass
    module = types.ModuleType("fake_heuristics_peer")
    tuner = triton.autotune([triton.Config({"BLOCK": size}) for size in (16, 32, 64, 128)], key=["n"],
                            cache_results=True)(kernel)
    module.kernel = triton.heuristics({"EVEN": lambda args: args["n"] % 2 == 0})(tuner)
    monkeypatch.setitem(sys.modules, "fake_heuristics_peer", module)
    assert peers.autotuners("fake_heuristics_peer") == [tuner]
    assert peers.keep_config_share("fake_heuristics_peer", 1, 2) == 2
    assert [config.kwargs["BLOCK"] for config in tuner.configs] == [32, 128]
    assert peers.compile_only("fake_heuristics_peer") == 1 and tuner.cache_results is False
