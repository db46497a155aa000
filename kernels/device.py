"""Host-side launch arithmetic: the GPU facts launch choices depend on, read once per device, and grid
sizes without Triton's per-call cost.

Asking the driver, or calling `triton.cdiv` (a jit function: 2.5 µs a call on the host), costs
microseconds on every call; kernels launched per layer, forward and backward, would pay it each time.
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


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for positive ints, in integer arithmetic (programs to cover a with tiles of b)."""
    return -(-a // b)
