"""Decoding from a spec: the model `mixc generate` and `mixc bench-decode` run, and the benchmark's timings.

On a CPU the layers run the plain-PyTorch reference; on a GPU the plan's kernels (backend "auto")."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import torch

from composer.build import build
from composer.layers.decode_graph import DecodeGraph
from composer.planner import plan
from composer.spec import Spec

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class DecodeError(ValueError):
    """A spec that cannot decode, or weights that do not fit it."""


def decoding_model(spec: Spec, weights: str | None = None, device: str | None = None, precision: str = "fp32"):
    """The spec's model in eval mode on `device` (default cuda when present), with `weights` (a safetensors file
    written by `save`) or freshly initialised; DecodeError when a layer cannot decode."""
    problem = plan(spec).decode_problem()
    if problem is not None:
        raise DecodeError(f"model `{spec.name}` cannot generate: {problem}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build(spec, backend="auto" if device.startswith("cuda") else "reference")
    if weights is not None:
        from composer.layers.weights import WeightsError, load_weights
        try:
            load_weights(model, weights)
        except (OSError, WeightsError) as exc:
            raise DecodeError(str(exc)) from None
    return model.to(device=device, dtype=DTYPES[precision]).eval()


def parse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise DecodeError(f"--prompt-ids must be comma-separated token ids, got {text!r}") from None
    if not ids:
        raise DecodeError("--prompt-ids needs at least one token id")
    return ids


@dataclass(frozen=True)
class DecodeTiming:
    batch: int
    prompt_len: int
    new_tokens: int
    prefill_ms: float         # the whole prompt through the cache, one call
    decode_ms_per_step: float  # one token for every row
    cache_bytes: int
    peak_memory_bytes: int    # CUDA's peak allocation, or the process's peak resident set on a CPU
    cuda_graph: bool = False  # the steps ran as one captured CUDA graph each

    @property
    def tokens_per_second(self) -> float:
        return self.batch / (self.decode_ms_per_step / 1e3)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_decode(model, batch: int, prompt_len: int, new_tokens: int, repeats: int = 3,
                cuda_graph: bool | None = None) -> DecodeTiming:
    """The median over `repeats` of a prefill of `prompt_len` random tokens and `new_tokens` greedy steps, the
    steps through a DecodeGraph (captured in a CUDA graph on CUDA where the step can be, unless cuda_graph is
    False; its capture is not timed)."""
    weight = model.embedding.weight
    device = weight.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cache = model.allocate_cache(batch, prompt_len + new_tokens, device)
    prompt = torch.randint(0, model.vocab_size, (batch, prompt_len), device=device)
    step = DecodeGraph(model, cache, graph=cuda_graph)
    prefills, steps = [], []
    for _ in range(repeats):
        cache.reset()
        _sync(device)
        start = time.perf_counter()
        logits = model(prompt, cache=cache)
        _sync(device)
        prefills.append(time.perf_counter() - start)
        token = logits[:, -1, :model.vocab_size].argmax(-1, keepdim=True)
        start = time.perf_counter()
        for _ in range(new_tokens):
            token = step(token)[:, -1, :model.vocab_size].argmax(-1, keepdim=True)
        _sync(device)
        steps.append((time.perf_counter() - start) / max(new_tokens, 1))
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return DecodeTiming(batch, prompt_len, new_tokens, 1e3 * sorted(prefills)[len(prefills) // 2],
                        1e3 * sorted(steps)[len(steps) // 2], cache.nbytes(), peak, step.captured)
