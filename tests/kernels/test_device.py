"""composer.kernels.device: the SM count launch choices read, asked of the driver once per device."""

import pytest
import torch

from composer.kernels import device


def test_multiprocessors_asks_the_driver_once_per_device(monkeypatch):
    asked = []

    class Properties:
        multi_processor_count = 132

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: asked.append(index) or Properties)
    device._multiprocessors.cache_clear()
    try:
        counts = [device.multiprocessors(torch.device("cuda", 1)) for _ in range(3)]
        assert counts == [132, 132, 132] and asked == [1]
        assert device.multiprocessors(torch.device("cuda", 0)) == 132 and asked == [1, 0]
    finally:
        device._multiprocessors.cache_clear()


def test_multiprocessors_refuses_a_device_without_them():
    with pytest.raises(ValueError, match="not a CUDA device"):
        device.multiprocessors(torch.device("cpu"))


@pytest.mark.parametrize("a, b", [(1, 1), (1, 256), (256, 256), (257, 256), (4096, 64), (4095, 64), (3, 2)])
def test_ceil_div_counts_the_tiles_that_cover_a(a, b):
    tiles = device.ceil_div(a, b)
    assert isinstance(tiles, int) and (tiles - 1) * b < a <= tiles * b
