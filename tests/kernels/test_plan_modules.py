"""The modules a scan's plan can load are finite and listed by the plan alone (`plan.plan_modules`): every
module the launcher loads in a run, at any batch, length, regime or segment count, is in that list."""

from __future__ import annotations

import os

import pytest
import torch

from composer.kernels.semiseparable import chunk
from composer.kernels.semiseparable.chunk import ssd_chunked_triton
from composer.kernels.semiseparable.plan import FORWARD_TEMPLATE, ScanSizes, plan_modules, plan_scan
from composer.kernels.semiseparable.tuning import SSDTuning

H, P, G, N, Q = 4, 16, 2, 16, 16
DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda"


def _inputs(b: int, L: int, requires_grad: bool):
    torch.manual_seed(b * 1000 + L)
    x = torch.randn(b, L, H, P)
    log_a = -torch.rand(b, L, H)
    B, C = torch.randn(b, L, G, N) / 4, torch.randn(b, L, G, N) / 4
    dt = torch.rand(b, L, H) + 0.1
    return [t.to(DEVICE).requires_grad_(requires_grad) for t in (x, log_a, B, C, dt)]


@pytest.mark.parametrize("tuning", [SSDTuning(16, 16, fused=True, segments=2), SSDTuning(16, 16, fused=False),
                                    SSDTuning(16, 16, fused=True)], ids=["segmented", "split", "fused"])
def test_every_module_a_run_loads_is_listed_by_its_plan(monkeypatch, tuning):
    sizes = ScanSizes(P, N, Q, H, G, decays=True, has_dt=True, final_state=True)
    plan = plan_scan(sizes, None, tuning)
    listed = set(plan_modules(plan))
    loaded = []
    load = chunk.load_kernel_once

    def recording(template, constants, header):
        loaded.append((template, tuple(sorted(constants.items()))))
        return load(template, constants, header)

    monkeypatch.setattr(chunk, "load_kernel_once", recording)
    for b, L, requires_grad in ((1, 64, False), (2, 64, True), (2, 128, False), (1, 128, True)):
        x, log_a, B, C, dt = _inputs(b, L, requires_grad)
        y, final_state = ssd_chunked_triton(x, log_a, B, C, Q, dt=dt, plan=plan)
        if requires_grad:
            (y.square().sum() + final_state.sum()).backward()
    assert loaded and set(loaded) <= listed, set(loaded) - listed
    forwards = [dict(constants) for template, constants in loaded if template == FORWARD_TEMPLATE]
    assert all("SEGMENTS" not in constants for constants in forwards)
    if tuning.segments == 2:  # the segmented walk, its state passing and the segmented backward ran, all listed
        assert any(c["FUSED"] and c["HAS_INITIAL_STATE"] for c in forwards)
        assert any(not c["FUSED"] for c in forwards)
        assert any(dict(constants).get("SEGMENTED") for template, constants in loaded if template != FORWARD_TEMPLATE)
    assert len(listed) == len(plan_modules(plan))  # no module listed twice


def test_a_plan_without_segments_lists_no_segmented_walk():
    """Under the interpreter the rule never segments, so neither the walk from given states nor its state
    passing is listed; on a GPU the rule may, so both are."""
    sizes = ScanSizes(64, 128, 256, 32, 8, decays=True, has_dt=True)
    off = plan_modules(plan_scan(sizes, None))
    on = plan_modules(plan_scan(sizes, 132))
    assert not any(dict(c).get("HAS_INITIAL_STATE") for _, c in off)
    fused = [v for vs in plan_scan(sizes, 132).variants.values() for v in vs if v.segment_rule is not None]
    assert fused and all((FORWARD_TEMPLATE, tuple(sorted(v.segment_state.items()))) in on for v in fused)
