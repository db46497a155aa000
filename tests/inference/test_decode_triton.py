"""The generated kernels on the cache path (SSD step, chunked scan from a state) against the reference forward,
under Triton's interpreter on a CPU (TRITON_INTERPRET=1, tests/conftest.py) at small shapes, or compiled on a GPU."""

import pytest
import torch

from composer.kernels.semiseparable import chunk, step as step_kernel

from .test_decode_matches_forward import build, spec_of

SSD = {"data": "semiseparable(state = 16, head_dim = 16, chunk = 16, decay = data)",
       "none": "semiseparable(state = 16, head_dim = 16, chunk = 16, decay = none, conv = 0)"}


def set_backend(model, backend: str) -> None:
    for layer in model.modules():
        if hasattr(layer, "backend"):
            layer.backend = backend


def record_calls(monkeypatch, module, names) -> list:
    """The names of `module`'s functions `names` in the order they are called (each still runs)."""
    calls = []
    for name in names:
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    return calls


def check_cached_kernels_match_reference(model, device) -> None:
    """Two rows on the generated kernels, row 1 a prompt of 13 tokens left-padded to 19, prefilled through the
    cache and then decoded five steps: row 0's logits are the reference's full forward's, row 1's prefill its
    own unpadded forward's (1e-4)."""
    tokens = torch.randint(0, 40, (2, 24), device=device)
    set_backend(model, "reference")
    full = model(tokens)
    set_backend(model, "triton")
    cache = model.allocate_cache(2, 24)
    mask = torch.ones(2, 19, dtype=torch.long, device=device)
    mask[1, :6] = 0
    prefill = model(tokens[:, :19], cache=cache, attention_mask=mask)
    torch.testing.assert_close(prefill[0], full[0, :19], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(prefill[1, 6:], model(tokens[1:, 6:19])[0], rtol=1e-4, atol=1e-4)
    for t in range(19, 24):
        step = model(tokens[:, t:t + 1], cache=cache)
        torch.testing.assert_close(step[0, 0], full[0, t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("decay", sorted(SSD))
@torch.no_grad()
def test_generated_step_and_prefill_match_the_reference_forward(decay, monkeypatch):
    names = ("ssd_step_triton", "ssd_decode_step_triton", "ssd_decode_layer_triton")
    calls = record_calls(monkeypatch, step_kernel, names)
    chunk_calls = record_calls(monkeypatch, chunk, ("ssd_chunked_triton",))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_cached_kernels_match_reference(build(spec_of(SSD[decay], channel="none", layers=1)).to(device), device)
    # with a short conv (decay data here) a step runs the block's three-kernel step, without one the step kernel
    used = "ssd_decode_layer_triton" if decay == "data" else "ssd_step_triton"
    assert calls.count(used) == 5 and len(calls) == 5 and "ssd_chunked_triton" in chunk_calls


@torch.no_grad()
def test_a_layer_with_biases_decodes_with_torch_s_projections_around_the_two_kernel_step(monkeypatch):
    calls = record_calls(monkeypatch, step_kernel, ("ssd_decode_step_triton", "ssd_decode_layer_triton"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = spec_of(SSD["data"].replace("decay = data", "decay = data, bias = true"), channel="none", layers=1)
    check_cached_kernels_match_reference(build(spec).to(device), device)
    assert calls == ["ssd_decode_step_triton"] * 5  # the fused GEMMs take no biases


@torch.no_grad()
def test_batches_above_the_fused_limit_decode_around_torch_s_projections(monkeypatch):
    """The plan takes the three-kernel step up to decode_plan.FUSED_MAX_BATCH rows (two here): at one row
    more, torch's GEMMs around the two-kernel step, with the same logits."""
    from composer.kernels.semiseparable import decode_plan
    monkeypatch.setattr(decode_plan, "FUSED_MAX_BATCH", 1)
    calls = record_calls(monkeypatch, step_kernel, ("ssd_decode_step_triton", "ssd_decode_layer_triton"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_cached_kernels_match_reference(build(spec_of(SSD["data"], channel="none", layers=1)).to(device), device)
    assert calls == ["ssd_decode_step_triton"] * 5


ATTENTION = {"gqa": "attention(heads = 4, kv_heads = 2, head_dim = 16)",
             "window": "attention(heads = 2, kv_heads = 1, window = 5)"}


@pytest.mark.parametrize("kind", sorted(ATTENTION))
@torch.no_grad()
def test_generated_attention_step_matches_the_reference_forward(kind, monkeypatch):
    """Five steps read the cache in the generated kernels (a window of 5 slots: the ring buffer wraps during
    them); prefill runs torch's SDPA."""
    from composer.kernels.attention import decode

    calls = record_calls(monkeypatch, decode, ("attention_decode_triton",))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_cached_kernels_match_reference(build(spec_of(ATTENTION[kind], channel="none", layers=1)).to(device), device)
    assert calls == ["attention_decode_triton"] * 5


DELTA = {"gated": "delta(head_dim = 32, heads = 4, key_dim = 16, key_heads = 2, chunk = 16)",
         "plain": "delta(head_dim = 16, heads = 2, key_dim = 16, gate = false, conv = 0, chunk = 16)"}


@pytest.mark.parametrize("kind", sorted(DELTA))
@torch.no_grad()
def test_generated_delta_step_and_prefill_match_the_reference_forward(kind, monkeypatch):
    from composer.kernels.delta import chunk as delta_chunk

    calls = record_calls(monkeypatch, delta_chunk, ("delta_step_triton", "delta_rule_chunked_triton"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    check_cached_kernels_match_reference(build(spec_of(DELTA[kind], channel="none", layers=1)).to(device), device)
    assert calls.count("delta_step_triton") == 5 and "delta_rule_chunked_triton" in calls
