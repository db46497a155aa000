"""Load a script of benchmarks/ as a module, as it imports its neighbours (ssd.py, peers.py) by path."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def load_benchmark(monkeypatch):
    """load_benchmark("ssd.py", "ssd_benchmark"): the script run as a module under that name, with
    benchmarks/ on sys.path; both are undone after the test."""
    loaded = []

    def load(script: str, name: str):
        monkeypatch.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
