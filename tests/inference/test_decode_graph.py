"""The static decoding step (`decode_step`, what DecodeGraph captures) against the cached forward it replaces:
identical logits and buffers on the graph-free path for every causal mixer kind, and on a GPU the replayed graph
equal to eager decoding."""

import pytest
import torch

from composer.layers.decode_graph import DecodeGraph

from .test_decode_matches_forward import MIXERS, build, spec_of
from .test_generate import HYBRID


@torch.no_grad()
def twin_caches_after_prefill(model, device="cpu"):
    """Two caches holding the same left-padded prefill of three rows, and the step tokens to continue them."""
    torch.manual_seed(3)
    prompts = torch.randint(0, 37, (3, 11), device=device)
    mask = torch.ones(3, 11, dtype=torch.long, device=device)
    mask[1, :4], mask[2, :9] = 0, 0
    caches = [model.allocate_cache(3, 20, device) for _ in range(2)]
    for cache in caches:
        model(prompts, cache=cache, attention_mask=mask)
    return caches, torch.randint(0, 37, (6, 3, 1), device=device)


def model_named(name: str):
    return build(HYBRID) if name == "hybrid" else build(spec_of(MIXERS[name]))


def assert_same_buffers(a, b) -> None:
    assert torch.equal(a.lengths, b.lengths)
    for layer_a, layer_b in zip(a.layers, b.layers):
        for name in layer_a:
            assert torch.equal(layer_a[name], layer_b[name]), name


@pytest.mark.parametrize("name", sorted(set(MIXERS) - {"monarch_causal"}) + ["hybrid"])
@torch.no_grad()
def test_graph_free_step_gives_the_cached_forwards_logits(name):
    model = model_named(name)
    (ours, theirs), steps = twin_caches_after_prefill(model)
    runner = DecodeGraph(model, ours, graph=False)
    for tokens in steps:
        expected = model(tokens, cache=theirs)
        assert torch.equal(runner(tokens), expected)
        assert_same_buffers(ours, theirs)
    assert not runner.captured


def test_a_step_takes_one_token_for_each_row_of_the_cache():
    model = build(spec_of(MIXERS["ssd_data"]))
    runner = DecodeGraph(model, model.allocate_cache(2, 8), graph=False)
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        runner(torch.zeros(2, 2, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("name", ["ssd_data", "attention_window", "hybrid"])
@torch.no_grad()
def test_replayed_graph_equals_eager_decoding(name):
    model = model_named(name).cuda()
    for layer in model.modules():
        if hasattr(layer, "backend"):
            layer.backend = "auto"
    (ours, theirs), steps = twin_caches_after_prefill(model, "cuda")
    runner = DecodeGraph(model, ours)
    assert runner.captured
    assert_same_buffers(ours, theirs)  # the capture leaves the cache as it found it
    for tokens in steps:
        expected = model.decode_step(tokens, theirs)
        torch.testing.assert_close(runner(tokens), expected, rtol=1e-5, atol=1e-5)
    for layer_ours, layer_theirs in zip(ours.layers, theirs.layers):
        for key in layer_ours:
            torch.testing.assert_close(layer_ours[key], layer_theirs[key], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_generate_keeps_its_decoding_step_with_the_cache():
    model = model_named("hybrid")
    prompt = torch.randint(0, 37, (2, 5))
    cache = model.allocate_cache(2, 12)
    first = model.generate(prompt, max_new_tokens=6, cache=cache)
    runner = cache.decode_graph
    assert runner is not None and not runner.captured  # a CPU runs the step eagerly
    assert torch.equal(model.generate(prompt, max_new_tokens=6, cache=cache), first)
    assert cache.decode_graph is runner
    with pytest.raises(ValueError, match="need 13"):  # 5 + 9 - 1 tokens: the last new one is never fed
        model.generate(prompt, max_new_tokens=9, cache=cache)


def test_a_mixer_that_reads_the_host_keeps_its_steps_out_of_a_graph():
    model = model_named("monarch_causal")
    with pytest.raises(ValueError, match="Monarch"):
        DecodeGraph(model, model.allocate_cache(1, 8), graph=True)
    assert not DecodeGraph(model, model.allocate_cache(1, 8)).captured
