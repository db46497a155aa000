"""Prefill + decode through the cache gives the logits of one full forward over the same tokens (fp32 reference,
1e-5), for every causal mixer kind and the causal examples: prompts of length 1, lengths that are not a
multiple of the chunk, prefill in several pieces, and batches of different prompt lengths (left padding)."""

import re
from pathlib import Path

import pytest
import torch

import composer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def spec_of(mixer: str, channel: str = "swiglu(hidden = 64)", max_len: int = 64, layers: int = 2):
    return composer.loads(f"""
model decode_{abs(hash(mixer)) % 10**6} {{
  d_model = 32
  vocab   = 40
  max_len = {max_len}
  dtype   = fp32
  block a {{
    mixer   = {mixer}
    channel = {channel}
  }}
  layers = [a] * {layers}
}}""")


MIXERS = {
    "ssd_data": "semiseparable(state = 8, head_dim = 16, chunk = 16, conv = 4, decay = data)",
    "ssd_groups": "semiseparable(state = 8, head_dim = 8, groups = 2, chunk = 16, conv = 3, decay = data)",
    "ssd_fixed_no_conv": "semiseparable(state = 8, head_dim = 16, chunk = 16, conv = 0, decay = fixed, "
                         "out_norm = false)",
    "ssd_no_decay_no_gate": "semiseparable(state = 8, head_dim = 16, chunk = 16, decay = none, gate = false, "
                            "skip = false)",
    "attention_gqa": "attention(heads = 4, kv_heads = 2)",
    "attention_window": "attention(heads = 4, kv_heads = 1, window = 5)",
    "attention_no_rope": "attention(heads = 2, rope = false)",
    "lowrank_elu": "lowrank(head_dim = 16, feature_dim = 8, chunk = 16)",
    "lowrank_retnet": "lowrank(head_dim = 16, feature_dim = 8, chunk = 16, decay = fixed, feature_map = relu, "
                      "normalize = false)",
    "lowrank_taylor": "lowrank(head_dim = 16, feature_dim = 4, feature_map = taylor, chunk = 16)",
    "monarch_causal": "monarch(blocks = 8, heads = 2, causal = true)",
    "gla": "gla(head_dim = 16, chunk = 16)",
    "gla_wide_keys_no_gate": "gla(head_dim = 8, key_dim = 16, output_gate = false, gate_rank = 4, chunk = 16)",
    "delta_gated": "delta(head_dim = 16, heads = 4, key_dim = 8, key_heads = 2, chunk = 16)",
    "delta_plain": "delta(head_dim = 8, heads = 2, gate = false, beta = sigmoid2, conv = 0, out_norm = false, "
                   "chunk = 16)",
}


def build(spec, seed: int = 0):
    torch.manual_seed(seed)
    model = composer.build(spec, backend="reference").eval()
    with torch.no_grad():  # weights away from their init, so every path carries signal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@torch.no_grad()
def check_cached_matches_full(model, prompt_lens: list[int], new_tokens: int, pieces: int = 1, vocab: int = 40):
    """Left-pad the rows' prompts, prefill them in `pieces`, decode `new_tokens` steps of known tokens; compare
    every real position's logits with a full forward of that row alone."""
    torch.manual_seed(1)
    batch, longest = len(prompt_lens), max(prompt_lens)
    tokens = torch.randint(0, vocab, (batch, longest + new_tokens))
    full = [model(tokens[r:r + 1, :prompt_lens[r] + new_tokens])[0] for r in range(batch)]
    prompts = torch.zeros(batch, longest, dtype=torch.long)
    mask = torch.zeros(batch, longest, dtype=torch.long)
    for r, p in enumerate(prompt_lens):
        prompts[r, longest - p:], mask[r, longest - p:] = tokens[r, :p], 1
    cache = model.allocate_cache(batch, longest + new_tokens)
    bounds = torch.linspace(0, longest, pieces + 1).round().long().tolist()
    prefill = torch.cat([model(prompts[:, a:b], cache=cache, attention_mask=mask[:, a:b])
                         for a, b in zip(bounds, bounds[1:]) if b > a], dim=1)
    for r, p in enumerate(prompt_lens):
        torch.testing.assert_close(prefill[r, longest - p:], full[r][:p], **TOLERANCE)
    for i in range(new_tokens):
        step = torch.stack([tokens[r, p + i] for r, p in enumerate(prompt_lens)])[:, None]
        logits = model(step, cache=cache)
        for r, p in enumerate(prompt_lens):
            torch.testing.assert_close(logits[r, 0], full[r][p + i], **TOLERANCE)
    assert cache.lengths.tolist() == [p + new_tokens for p in prompt_lens]


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_prefill_and_decode_equal_the_full_forward(name):
    model = build(spec_of(MIXERS[name]))
    check_cached_matches_full(model, [19], new_tokens=6)            # 19: not a multiple of the chunk


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_prompt_of_one_token(name):
    check_cached_matches_full(build(spec_of(MIXERS[name])), [1], new_tokens=4)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_prefill_in_pieces_and_left_padded_batch(name):
    check_cached_matches_full(build(spec_of(MIXERS[name])), [23, 7, 1, 16], new_tokens=5, pieces=3)


def test_prefill_in_pieces_leaves_the_state_of_one_piece():
    model = build(spec_of(MIXERS["ssd_data"], layers=1))
    tokens = torch.randint(0, 40, (2, 37))
    whole, split = model.allocate_cache(2, 40), model.allocate_cache(2, 40)
    with torch.no_grad():
        model(tokens, cache=whole)
        for a, b in ((0, 5), (5, 21), (21, 37)):
            model(tokens[:, a:b], cache=split)
    for name, buffer in whole.layers[0].items():
        torch.testing.assert_close(split.layers[0][name], buffer, **TOLERANCE)


def shrunk(text: str) -> str:
    """An example's schedule and kinds at a size a CPU test runs in seconds."""
    for pattern, value in ((r"d_model\s*=\s*\d+", "d_model = 32"), (r"vocab\s*=\s*\d+( pad_to \d+)?", "vocab = 40"),
                           (r"hidden\s*=\s*\d+", "hidden = 64"), (r"state\s*=\s*\d+", "state = 8"),
                           (r"head_dim\s*=\s*\d+", "head_dim = 16"), (r"chunk\s*=\s*\d+", "chunk = 16"),
                           (r"window\s*=\s*\d+", "window = 6"), (r"heads\s*=\s*16", "heads = 4"),
                           (r"kv_heads\s*=\s*4", "kv_heads = 2"), (r"heads\s*=\s*8", "heads = 2"),
                           (r"heads = 12", "heads = 2"),
                           (r"max_len\s*=\s*\w+", "max_len = 64"), (r"dtype\s*=\s*\w+", "dtype = fp32"),
                           (r"\* 24\b", "* 8"), (r'"RRL" \* 8', '"RRL" * 2')):
        text = re.sub(pattern, value, text)
    return re.sub(r"^  search \{.*?^  \}\n", "", text, flags=re.S | re.M)


CAUSAL_EXAMPLES = ["griffin_local", "hybrid_1b", "mamba2_130m", "tiny_mqar", "mqar_search", "gla_340m",
                   "qwen3_next_style"]


@pytest.mark.parametrize("example", CAUSAL_EXAMPLES)
def test_causal_examples_decode_as_they_run(example, tmp_path):
    for source in EXAMPLES.glob("*.mix"):
        (tmp_path / source.name).write_text(shrunk(source.read_text()))
    model = build(composer.load(tmp_path / f"{example}.mix"))
    check_cached_matches_full(model, [21, 4], new_tokens=4, pieces=2)


@pytest.mark.parametrize("example", ["hydra_encoder", "m2_bert"])
def test_bidirectional_examples_cannot_generate(example):
    spec = composer.load(EXAMPLES / f"{example}.mix")
    problem = composer.plan(spec).decode_problem()
    assert problem is not None and "layer 0" in problem
    model = build(composer.loads(shrunk((EXAMPLES / f"{example}.mix").read_text())))
    with pytest.raises(ValueError, match="cannot decode: .*(bidirectional|later tokens)"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), max_new_tokens=2)


@pytest.mark.parametrize("name", ["ssd_data", "attention_window", "lowrank_elu", "monarch_causal",
                                  "delta_gated"])
def test_planned_cache_bytes_equal_the_allocated(name):
    spec = spec_of(MIXERS[name])
    plan = composer.plan(spec)
    model = build(spec)
    for batch, length in ((1, 64), (3, 20)):
        assert plan.cache_bytes(batch, length) == model.allocate_cache(batch, length).nbytes() > 0


def test_examples_cache_bytes_equal_the_allocated(tmp_path):
    for source in EXAMPLES.glob("*.mix"):
        (tmp_path / source.name).write_text(shrunk(source.read_text()).replace("dtype = fp32", "dtype = bf16"))
    spec = composer.load(tmp_path / "griffin_local.mix")
    model = build(spec)
    cache = model.allocate_cache(2, 64, dtype=torch.bfloat16)
    assert composer.plan(spec).cache_bytes(2, 64) == cache.nbytes()
    window_keys = [layer["key"] for layer in cache.layers if "key" in layer]
    assert window_keys and all(k.shape[1] == 6 for k in window_keys)  # the window's ring buffer, not max_len


def test_padding_alone_changes_no_cache():
    model = build(spec_of(MIXERS["ssd_data"]))
    cache = model.allocate_cache(1, 16)
    with torch.no_grad():
        model(torch.randint(0, 40, (1, 5)), cache=cache, attention_mask=torch.zeros(1, 5, dtype=torch.long))
    assert cache.lengths.tolist() == [0]
    assert all(not t.any() for layer in cache.layers for t in layer.values())
