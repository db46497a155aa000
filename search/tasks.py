"""Synthetic sequence tasks generated on the fly from a seed.

MQAR (multi-query associative recall, Zoology: Arora et al., 2023): a context of
key-value pairs, then the keys again in shuffled order; at each repeated key the
model must predict its value. Keys come from the lower half of the vocabulary,
values from the upper half, token 0 fills the gaps. Targets are -100 (ignored)
everywhere but at the queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass(frozen=True)
class MQAR:
    seq_len: int = 64
    pairs: int = 8
    vocab: int = 128

    def __post_init__(self) -> None:
        if self.seq_len < 4 * self.pairs:
            raise ValueError(f"MQAR needs seq_len >= 4 * pairs ({4 * self.pairs}), got {self.seq_len}")
        if self.vocab // 2 - 1 < self.pairs:
            raise ValueError(f"MQAR needs vocab >= 2 * (pairs + 1) ({2 * (self.pairs + 1)}), got {self.vocab}")

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (size, seq_len) int64."""
        half = self.vocab // 2
        keys = torch.argsort(torch.rand(size, half - 1, generator=generator), dim=1)[:, : self.pairs] + 1
        values = torch.randint(half, self.vocab, (size, self.pairs), generator=generator)
        inputs = torch.zeros(size, self.seq_len, dtype=torch.long)
        targets = torch.full((size, self.seq_len), IGNORE, dtype=torch.long)
        inputs[:, 0 : 2 * self.pairs : 2] = keys
        inputs[:, 1 : 2 * self.pairs : 2] = values
        # Queries: each key once, shuffled, on distinct positions after the context.
        order = torch.argsort(torch.rand(size, self.pairs, generator=generator), dim=1)
        free = self.seq_len - 2 * self.pairs
        slots = torch.sort(torch.argsort(torch.rand(size, free, generator=generator), dim=1)[:, : self.pairs], 1).values
        positions = 2 * self.pairs + slots
        rows = torch.arange(size)[:, None]
        inputs[rows, positions] = torch.gather(keys, 1, order)
        targets[rows, positions] = torch.gather(values, 1, order)
        return inputs, targets


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of query positions (targets != IGNORE) whose argmax is the target."""
    mask = targets != IGNORE
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean().item()
