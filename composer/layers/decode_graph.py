"""DecodeGraph: a model's decoding step for one cache, captured once in a CUDA graph, so that a step costs one
graph launch instead of a few hundred kernel launches from Python.

The step is `LanguageModel.decode_step`: it reads the cache's buffers and its per-row `lengths` on the device
and changes them in place, so the captured graph replays on the same tensors for the life of the cache. A
graph is one batch size (the cache's); capture a DecodeGraph for each cache. Off CUDA (or with graph=False)
the same step runs eagerly, so both paths compute the same thing.
"""

from __future__ import annotations

import torch


class DecodeGraph:
    """`runner(tokens)`: tokens (batch, 1) -> logits (batch, 1, padded vocab) of the next step, continuing
    `cache` like `model(tokens, cache=cache)` without its host-side checks: ids must be below the vocab and
    the cache long enough for the step.

    On CUDA the step is captured at construction (after `warmup` eager steps that compile the kernels); the
    cache's contents are saved around the capture and put back, so a runner can be made before or after the
    prefill. The logits come back in one static buffer that the next call overwrites: copy them to keep them.
    graph: None captures on CUDA when every layer's step can be captured (a mixer whose cached path reads tensors
    on the host says so with `decode_reads_host`); False always runs eagerly; True insists.
    """

    def __init__(self, model, cache, graph: bool | None = None, warmup: int = 2):
        self.model, self.cache = model, cache
        device = cache.lengths.device
        self.tokens = torch.zeros(cache.batch, 1, dtype=torch.long, device=device)
        self.graph = None
        self.logits = None
        host = [type(layer.mixer).__name__ for layer in model.layers
                if getattr(layer.mixer, "decode_reads_host", False)]
        if graph and host:
            raise ValueError(f"a CUDA graph cannot capture the decoding step of {', '.join(sorted(set(host)))}: its "
                             "cached path reads tensors on the host; run it with graph=False")
        if (device.type == "cuda" and not host) if graph is None else graph:
            self._capture(warmup)

    def _buffers(self) -> list[torch.Tensor]:
        return [t for layer in self.cache.layers for t in layer.values()] + [self.cache.lengths]

    @torch.no_grad()
    def _capture(self, warmup: int) -> None:
        saved = [t.clone() for t in self._buffers()]
        side = torch.cuda.Stream(device=self.tokens.device)
        side.wait_stream(torch.cuda.current_stream(self.tokens.device))
        with torch.cuda.stream(side):  # capture-safe warm-up: first calls compile kernels and set up cuBLAS
            for _ in range(warmup):
                self.model.decode_step(self.tokens, self.cache)
        torch.cuda.current_stream(self.tokens.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.model.decode_step(self.tokens, self.cache)
        for buffer, value in zip(self._buffers(), saved):
            buffer.copy_(value)
        self.graph = graph

    @property
    def captured(self) -> bool:
        return self.graph is not None

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape != self.tokens.shape:
            raise ValueError(f"a decoding step takes tokens of shape {tuple(self.tokens.shape)} (the cache's batch, "
                             f"one token a row); got {tuple(tokens.shape)}")
        self.tokens.copy_(tokens)
        if self.graph is None:
            return self.model.decode_step(self.tokens, self.cache)
        self.graph.replay()
        return self.logits
