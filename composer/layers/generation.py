"""`generate`: greedy or sampled continuation of prompts through the decoding cache, with Hugging Face's
argument names and meanings (do_sample, temperature, top_k, top_p, eos_token_id, pad_token_id,
attention_mask with left padding; the prompt and the new tokens come back together)."""

from __future__ import annotations

import torch

from composer.layers.decode_graph import DecodeGraph


def _warp(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), in the order of transformers' logits warpers."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def _next_tokens(logits, do_sample, temperature, top_k, top_p, generator) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(_warp(logits.float(), temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int = 20, attention_mask: torch.Tensor | None = None,
             do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
             generator: torch.Generator | None = None, prefill_chunk: int | None = None, cache=None,
             cache_dtype: torch.dtype | None = None, cuda_graph: bool | None = None) -> torch.Tensor:
    """input_ids (batch, prompt length), left-padded where prompts differ in length (attention_mask 0 there)
    -> (batch, prompt length + new tokens). A row that emits an eos token is finished: its later tokens are
    pad_token_id (default: the first eos id); generation stops when every row is finished or after
    max_new_tokens. prefill_chunk: run the prompt through the cache in pieces of that many tokens.
    cache: a ModelCache to reuse (reset here), else one is allocated for prompt + max_new_tokens.
    cuda_graph: run the decoding steps as one captured CUDA graph (DecodeGraph; None: on CUDA where every layer's
    step can be captured). The graph is kept with the cache, so passing the same cache again reuses it instead of
    capturing anew."""
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be (batch, prompt length >= 1); got {tuple(input_ids.shape)}")
    batch, prompt_len = input_ids.shape
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    if cache is None:
        cache = model.allocate_cache(batch, prompt_len + max_new_tokens, input_ids.device, cache_dtype)
    else:
        if prompt_len + max_new_tokens - 1 > cache.length:
            raise ValueError(f"the cache holds {cache.length} tokens a sequence; a prompt of {prompt_len} and "
                             f"{max_new_tokens} new tokens need {prompt_len + max_new_tokens - 1}")
        cache.reset()
    if not 0 <= pad < model.vocab_size:
        raise ValueError(f"pad_token_id {pad} must be a token id below the vocab ({model.vocab_size})")
    if attention_mask is not None and not bool(attention_mask[:, -1].bool().all()):
        raise ValueError("every prompt's last token must be real: pad prompts on the left")
    step = prefill_chunk or prompt_len
    for start in range(0, prompt_len, step):
        piece = None if attention_mask is None else attention_mask[:, start:start + step]
        logits = model(input_ids[:, start:start + step], cache=cache, attention_mask=piece)
    tokens, finished = [input_ids], torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    for index in range(max_new_tokens):
        last = logits[:, -1, :model.vocab_size]
        chosen = _next_tokens(last, do_sample, temperature, top_k, top_p, generator)
        chosen = torch.where(finished, pad, chosen)
        tokens.append(chosen[:, None])
        if eos:
            finished |= torch.isin(chosen, torch.tensor(eos, device=chosen.device))
            if bool(finished.all()):
                break
        if index + 1 < max_new_tokens:
            if index == 0:
                step = decode_runner(model, cache, cuda_graph)
            logits = step(chosen[:, None])
    return torch.cat(tokens, dim=1)


def decode_runner(model, cache, cuda_graph: bool | None = None) -> DecodeGraph:
    """The cache's DecodeGraph for `model`, made (and on CUDA captured) on first use and kept with the cache."""
    runner = getattr(cache, "decode_graph", None)
    if runner is None or runner.model is not model or (cuda_graph is not None and runner.captured != cuda_graph):
        runner = DecodeGraph(model, cache, graph=cuda_graph)
        cache.decode_graph = runner
    return runner
