"""The CPU thread count `mixc train` and search workers give torch."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import composer.search.threads as threads
import composer.search.train as train
from composer.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("workers, cores, busy, expected", [
    (1, 2, 0, 2),    # an idle 2-core machine: both cores
    (1, 2, 5, 1),    # a loaded one: one thread, not two that wait on each other
    (4, 16, 0, 4),   # search workers share the cores
    (3, 16, 4, 4),   # ... the idle ones
    (8, 4, 0, 1),    # never fewer than one
])
def test_threads_share_the_idle_cores_among_workers(workers, cores, busy, expected):
    assert threads.cpu_threads(workers, cores=cores, busy=busy) == expected


def test_use_cpu_threads_sets_torch_to_the_choice(monkeypatch, restore_torch_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    monkeypatch.setattr(threads, "busy_cores", lambda: 1)
    assert threads.use_cpu_threads() == 2 == torch.get_num_threads()
    assert threads.use_cpu_threads(1) == 1 == torch.get_num_threads()  # an explicit count wins


def test_omp_num_threads_is_left_to_torch(monkeypatch, restore_torch_threads):
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "busy_cores", lambda: 0)
    assert threads.use_cpu_threads() == 1


@pytest.mark.parametrize("argv, expected", [([], 1), (["--threads", "3"], 3)])
def test_mixc_train_trains_with_the_chosen_threads(monkeypatch, restore_torch_threads, argv, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads, "busy_cores", lambda: 5)
    torch.set_num_threads(2)
    seen = []

    def fake_train(spec, **options):
        seen.append(torch.get_num_threads())
        return SimpleNamespace(loss=0.0, accuracy=1.0, tokens_per_second=1.0)

    monkeypatch.setattr(train, "train_mqar", fake_train)
    assert main(["train", str(EXAMPLES / "tiny_mqar.mix"), *argv]) == 0
    assert seen == [expected]
