"""Facts about the GPU that launch choices depend on, read once per device.

Asking the driver costs microseconds on every call; kernels launched per layer, forward and
backward, would pay it each time.
"""

from __future__ import annotations

import functools

import torch


def multiprocessors(device: torch.device) -> int:
    """The multiprocessor (SM) count of a CUDA device."""
    if device.type != "cuda":
        raise ValueError(f"multiprocessors: {device} is not a CUDA device")
    return _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count
