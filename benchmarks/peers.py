"""Import peer implementations from a folder outside the repository's history.

mamba_ssm's Triton SSD kernels live in `.peers/mamba_ssm/ops/triton/` (copied from a
fetched state-spaces/mamba; ignored by .git/info/exclude, never committed). The
package's own `__init__` imports CUDA extensions we do not build, so empty package
modules stand in for `mamba_ssm` and `mamba_ssm.ops`, and only the Triton files and
their small utils are executed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

PEERS = Path(__file__).resolve().parents[1] / ".peers"


def _namespace(name: str, path: Path) -> None:
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module


def mamba_chunk_scan_combined():
    """mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined, or an ImportError saying why."""
    root = PEERS / "mamba_ssm"
    if not (root / "ops" / "triton" / "ssd_combined.py").exists():
        raise ImportError(f"no mamba_ssm Triton kernels under {root}: copy mamba_ssm/ops/triton and "
                          "mamba_ssm/utils from state-spaces/mamba there (see benchmarks/README.md)")
    _namespace("mamba_ssm", root)
    _namespace("mamba_ssm.ops", root / "ops")
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as peer
    return peer


def mamba_rmsnorm_gated():
    """mamba_ssm.ops.triton.layernorm_gated.rmsnorm_fn (Mamba-2's fused gated RMSNorm)."""
    root = PEERS / "mamba_ssm"
    if not (root / "ops" / "triton" / "layernorm_gated.py").exists():
        raise ImportError(f"no mamba_ssm Triton kernels under {root} (see benchmarks/README.md)")
    _namespace("mamba_ssm", root)
    _namespace("mamba_ssm.ops", root / "ops")
    from mamba_ssm.ops.triton.layernorm_gated import rmsnorm_fn
    return rmsnorm_fn
