"""What the plan says runs for one layer, and the target it decides for. Plain data, no Triton.

The planner asks each mixer kind for a `LayerKernels` on a `Target`; launchers receive the kind's
own plan entry (`LayerKernels.entry`) and only look up in it what their batch picks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("fp32", "bf16")
MODES = ("train", "inference")
# A family's 16-bit inputs multiply as fp32 where one of the sizes its product tiles span (head dims, state,
# chunk) is below this: on the H200 the SSD backward's 16-bit products at 16-wide tiles gave a wrong dx
# (relative error 1.4 at P = N = chunk = 16 in tests/kernels/test_semiseparable_triton.py's bf16 segmented-paths
# check, 2026-12-02), while every SSD path at production sizes passed in bf16
# (results/long_prefill_h200_2026-12-02_*.log). Such layers are small; fp32 products cost them little.
SMALLEST_16BIT_SIZE = 32


@dataclass(frozen=True)
class Target:
    """The machine and run the plan decides kernels for.

    gpu             the GPU's name as torch reports it, or "interpreter" (Triton's CPU interpreter)
    multiprocessors its SM count, which batch rules compare program counts with; None where there are no
                    waves to fill (the interpreter): every batch rule then takes its small-batch choice
    precision       the activations' dtype the listing shows ("fp32", or "bf16" under autocast)
    mode            "train" (forwards save for a backward) or "inference" (no gradients)
    """

    gpu: str = "interpreter"
    multiprocessors: int | None = None
    capability: tuple[int, int] | None = None
    precision: str = "fp32"
    mode: str = "train"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def on_gpu(self) -> bool:
        return self.multiprocessors is not None

    @classmethod
    def current(cls, precision: str = "fp32", mode: str = "train") -> "Target":
        """This process's current CUDA device, else the interpreter."""
        import torch

        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        return cls.of(device, precision, mode)

    @classmethod
    def of(cls, device, precision: str = "fp32", mode: str = "train") -> "Target":
        """The target a torch device is: its GPU facts on CUDA, the interpreter anywhere else (or for None).
        Remembered per device: launchers ask on every call."""
        return _target_of(device if device is not None and device.type == "cuda" else None, precision, mode)


@functools.lru_cache(maxsize=None)
def _target_of(device, precision: str, mode: str) -> Target:
    """`Target.of`, asking the driver once per CUDA device."""
    if device is None:
        return Target(precision=precision, mode=mode)
    import torch

    props = torch.cuda.get_device_properties(device)
    return Target(props.name, props.multi_processor_count, (props.major, props.minor), precision, mode)


# The GPU a plan assumes when asked for one without a GPU at hand (`mixc check` on a laptop): an H100/H200's
# 132 multiprocessors.
DEFAULT_GPU = Target(gpu="NVIDIA H200", multiprocessors=132, capability=(9, 0))


@dataclass(frozen=True)
class KernelCall:
    """One generated specialisation a layer runs: its template, every constant, and the batch rule under
    which the launcher takes it ("" when it always does)."""

    template: str
    constants: tuple  # sorted (name, value) pairs
    when: str = ""


@dataclass(frozen=True)
class LayerKernels:
    """What runs for one layer on a target.

    path    "generated" (the calls below), "reference" (plain PyTorch although the kind has kernels:
            `reason` says which size keeps it off them) or "torch" (the kind has no generated kernels)
    reason  why, in words a listing shows
    calls   the specialisations at the target's precision and mode
    entry   the kind's own plan entry its launcher receives (every precision and mode: a built module may
            train and then decode); None off the generated path
    field   on the reference path, the part's field whose size keeps it there (for located warnings)
    """

    path: str
    reason: str
    calls: tuple[KernelCall, ...] = ()
    entry: Any = field(default=None, compare=False)
    field: str | None = None

    @classmethod
    def torch(cls, reason: str) -> "LayerKernels":
        return cls("torch", reason)

    @classmethod
    def reference(cls, reason: str, field: str | None = None) -> "LayerKernels":
        return cls("reference", reason, field=field)


def runs_generated(backend: str, on_cuda: bool, planned: bool = True) -> bool:
    """A layer's choice at run time: backend "triton" always takes the kernels (on a CPU, under the
    interpreter), "auto" on CUDA where the plan put the layer on them; "reference" never."""
    return backend == "triton" or (backend == "auto" and on_cuda and planned)
