"""`generate()`: greedy against a loop of full forwards, seeded sampling, left-padded batches, eos stopping."""

import pytest
import torch

import composer

from .test_decode_matches_forward import MIXERS, build, spec_of

HYBRID = composer.loads("""
model gen_hybrid {
  d_model = 32
  vocab   = 37 pad_to 8
  max_len = 64
  dtype   = fp32
  block s {
    mixer   = semiseparable(state = 8, head_dim = 16, chunk = 16)
    channel = swiglu(hidden = 64)
  }
  block a {
    mixer   = attention(heads = 4, kv_heads = 2, window = 6)
    channel = swiglu(hidden = 64)
  }
  block l {
    mixer   = lowrank(head_dim = 16, feature_dim = 8, chunk = 16)
    channel = none
  }
  layers = [s, a, l, s]
}""")


@torch.no_grad()
def greedy_by_full_forwards(model, prompt: torch.Tensor, new: int) -> torch.Tensor:
    tokens = prompt
    for _ in range(new):
        logits = model(tokens)[:, -1, :model.vocab_size]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_greedy_equals_a_loop_of_full_forwards():
    model = build(HYBRID)
    prompt = torch.randint(0, 37, (2, 9))
    assert torch.equal(model.generate(prompt, max_new_tokens=12), greedy_by_full_forwards(model, prompt, 12))


def test_never_picks_a_padding_id_of_the_vocab():
    model = build(HYBRID)
    with torch.no_grad():
        model.embedding.weight[37:] = 10.0  # the padded rows would win every argmax
    out = model.generate(torch.randint(0, 37, (3, 4)), max_new_tokens=6, do_sample=True, temperature=2.0)
    assert out.max() < 37


def test_left_padded_batch_generates_what_each_prompt_does_alone():
    model = build(HYBRID)
    prompts = [torch.randint(0, 37, (1, n)) for n in (11, 3, 1)]
    width = max(p.shape[1] for p in prompts)
    ids = torch.cat([torch.nn.functional.pad(p, (width - p.shape[1], 0)) for p in prompts])
    mask = torch.cat([torch.nn.functional.pad(torch.ones_like(p), (width - p.shape[1], 0)) for p in prompts])
    batched = model.generate(ids, max_new_tokens=7, attention_mask=mask, prefill_chunk=4)
    for row, prompt in enumerate(prompts):
        assert torch.equal(batched[row, width:], model.generate(prompt, max_new_tokens=7)[0, prompt.shape[1]:])


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    model = build(HYBRID)
    prompt = torch.randint(0, 37, (2, 5))
    runs = [model.generate(prompt, 10, do_sample=True, top_p=0.9, temperature=0.8,
                           generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = model.generate(prompt, 10, do_sample=True, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0], other)
    assert torch.equal(model.generate(prompt, 10, do_sample=True, top_k=1), model.generate(prompt, 10))


def test_stops_on_eos_and_pads_finished_rows():
    model = build(HYBRID)
    prompt = torch.randint(0, 37, (2, 5))
    greedy = model.generate(prompt, max_new_tokens=8)
    eos = int(greedy[0, 6])  # the second new token of row 0
    out = model.generate(prompt, max_new_tokens=8, eos_token_id=eos, pad_token_id=36)
    first = (out[0, 5:] == eos).nonzero()[0, 0].item()
    assert (out[0, 5 + first + 1:] == 36).all()
    assert out.shape[1] <= 13
    if not (out[1, 5:] == eos).any():
        assert out.shape[1] == 13  # row 1 never finished: every step ran


def test_a_cache_too_short_is_a_clear_error():
    model = build(spec_of(MIXERS["attention_gqa"]))
    cache = model.allocate_cache(1, 4)
    with pytest.raises(ValueError, match="cache holds 4 tokens"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_forward_without_a_cache_is_unchanged_by_the_cache_path():
    model = build(HYBRID)
    tokens = torch.randint(0, 37, (2, 20))
    with torch.no_grad():
        cached = model(tokens, cache=model.allocate_cache(2, 20))
        assert torch.allclose(cached, model(tokens), rtol=1e-5, atol=1e-5)
