"""Linear attention's plan on the SSD kernels: the values' scan and, when normalised, the normaliser's.
Pure: no tensors, no Triton."""

from __future__ import annotations

from composer.kernels.semiseparable.plan import ScanPlan, ScanSizes, plan_scan

# The normaliser runs as its own scan over a block of this width whose first column is ones: the kernels
# tile the value dim in powers of two, and 16 is the smallest tile.
NORMALISER_WIDTH = 16


def plan_linear_attention(head_dim: int, mapped_dim: int, chunk: int, heads: int, decays: bool, normalize: bool,
                          multiprocessors: int | None, gpu: str = "*") -> tuple[ScanPlan, ScanPlan | None]:
    """(values' plan, normaliser's plan or None): one group per head, no dt, no skip."""
    def scan(value_dim: int) -> ScanPlan:
        return plan_scan(ScanSizes(value_dim, mapped_dim, chunk, heads, heads, decays), multiprocessors, gpu=gpu)
    return scan(head_dim), scan(NORMALISER_WIDTH) if normalize else None
