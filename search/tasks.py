"""Synthetic sequence tasks, generated on the fly from a seed, each scored on a held-out stream.

Every task gives (inputs, targets) batches of shape (batch, seq_len), int64, drawn on the
generator's device (a GPU trial's batches then cost no CPU time and no copy); targets are
IGNORE (-100) except where the model must answer, and `accuracy` is the share of those
positions it gets right. Each probes one ability a mixer may or may not have:

  mqar            recall of many key-value pairs (Zoology, Arora et al., 2023): state capacity
  selective_copy  copying the tokens that matter out of noise (Mamba, Gu & Dao, 2023): selectivity
  induction       "after A came B, now A again: B" (Olsson et al., 2022): a single recall
  permutation     composing permutations of `degree` items, one answer per prefix
                  (Merrill et al., 2024; degree 2 is running parity): state tracking

`make_task(settings, model_vocab, max_len)` turns the plain data a spec writes
(`task = mqar(seq_len = 256, pairs = 32)`) into a task, or raises TaskError naming the
setting at fault.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from composer.grammar.errors import did_you_mean

IGNORE = -100


class TaskError(ValueError):
    """A task setting that cannot work; `field` names it (None: the task as a whole)."""

    def __init__(self, message: str, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.field, self.hint = field, hint


def _distinct(size: int, population: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """(size, count) draws without replacement from range(population), in random order."""
    return torch.argsort(torch.rand(size, population, generator=generator, device=generator.device), dim=1)[:, :count]


# The lengths of a mixed MQAR batch's examples, as fractions of its seq_len (Zoology's mixture of 64 to 256 tokens).
MIXED_FRACTIONS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class MQAR:
    """Zoology's multi-query associative recall, as `multiquery_ar` generates it.

    The context holds `pairs` key-value pairs (keys from the lower half of the vocabulary,
    values from the upper half, each drawn without replacement); then each key comes
    again once, at an even offset whose gap from the context follows a power law with
    exponent `power_a` (so most queries come soon after it, a few far away). At a query
    the model must predict the key's value. With `noise`, every other position holds a
    random token, as Zoology's `random_non_queries`; without, token 0.

    With `mixed`, one batch mixes lengths, as Zoology trains on several (length, pairs)
    configurations at once: each example is `seq_len` / 4, / 2 or whole (MIXED_FRACTIONS,
    drawn evenly), with its pairs scaled alike (at least one), and is padded after its end
    with token 0 and no targets.
    """

    kind: ClassVar[str] = "mqar"
    seq_len: int = 64
    pairs: int = 8
    vocab: int = 128
    power_a: float = 0.01
    noise: bool = True
    mixed: bool = False

    def __post_init__(self) -> None:
        if self.seq_len % 2:
            raise TaskError(f"mqar places queries at even offsets: seq_len must be even, got {self.seq_len}",
                            "seq_len")
        if self.pairs < 1 or self.seq_len < 4 * self.pairs:
            raise TaskError(f"mqar needs 1 <= pairs and seq_len >= 4 * pairs = {4 * self.pairs} "
                            f"(context and queries), got seq_len {self.seq_len}", "pairs",
                            f"use pairs <= {self.seq_len // 4} or a longer seq_len")
        if self.vocab // 2 - 1 < self.pairs:
            raise TaskError(f"mqar draws {self.pairs} distinct keys from the lower half of the vocabulary "
                            f"(1 .. {self.vocab // 2 - 1}): vocab must be at least {2 * (self.pairs + 1)}",
                            "vocab")
        if not 0 < self.power_a <= 1:
            raise TaskError(f"power_a is the exponent of the gap distribution, in (0, 1], got {self.power_a}",
                            "power_a")
        for length, pairs in self.configurations()[:-1]:
            if length % 2 or length < 4 * pairs:
                raise TaskError(f"mixed mqar's examples of {length} tokens (seq_len {self.seq_len} x "
                                f"{length / self.seq_len:g}) hold {pairs} pairs: they need an even length of at "
                                f"least {4 * pairs}", "seq_len", "use a seq_len that is a multiple of 8")

    def configurations(self) -> list[tuple[int, int]]:
        """(length, pairs) of each kind of example a batch holds: one, or MIXED_FRACTIONS' with `mixed`."""
        if not self.mixed:
            return [(self.seq_len, self.pairs)]
        return [(int(self.seq_len * fraction), max(1, int(self.pairs * fraction))) for fraction in MIXED_FRACTIONS]

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixed:
            return self._mixed_batch(size, generator)
        half, context, device = self.vocab // 2, 2 * self.pairs, generator.device
        keys = _distinct(size, half - 1, self.pairs, generator) + 1
        values = _distinct(size, self.vocab - half, self.pairs, generator) + half
        space = (self.seq_len - context) // 2
        gap_weights = self.power_a * torch.arange(1, space + 1, dtype=torch.float64, device=device) ** (self.power_a - 1)
        gaps = torch.multinomial(gap_weights.expand(size, space), self.pairs, replacement=False,
                                 generator=generator)
        if self.noise:
            inputs = torch.randint(0, self.vocab, (size, self.seq_len), generator=generator,
                                   device=device)
        else:
            inputs = torch.zeros(size, self.seq_len, dtype=torch.long, device=device)
        targets = torch.full((size, self.seq_len), IGNORE, dtype=torch.long, device=device)
        inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
        rows, positions = torch.arange(size, device=device)[:, None], context + 2 * gaps
        inputs[rows, positions] = keys
        targets[rows, positions] = values
        return inputs, targets

    def _mixed_batch(self, size: int, generator: torch.Generator,
                     every_row: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """every_row: draw each kind for every row and keep each row's own (default: off the CPU, where
        counting a kind's rows would wait on the device every step); else draw only each kind's rows."""
        configurations, device = self.configurations(), generator.device
        every_row = device.type != "cpu" if every_row is None else every_row
        kinds = torch.randint(0, len(configurations), (size, 1), generator=generator, device=device)
        inputs = torch.zeros(size, self.seq_len, dtype=torch.long, device=device)
        targets = torch.full((size, self.seq_len), IGNORE, dtype=torch.long, device=device)
        for kind, (length, pairs) in enumerate(configurations):
            part = dataclasses.replace(self, seq_len=length, pairs=pairs, mixed=False)
            mine = kinds == kind
            if every_row:
                part_inputs, part_targets = part.batch(size, generator)
                inputs[:, :length] = torch.where(mine, part_inputs, inputs[:, :length])
                targets[:, :length] = torch.where(mine, part_targets, targets[:, :length])
            else:
                rows = mine.flatten().nonzero().flatten()
                if len(rows):
                    inputs[rows, :length], targets[rows, :length] = part.batch(len(rows), generator)
        return inputs, targets


@dataclass(frozen=True)
class SelectiveCopy:
    """Mamba's selective copying: `tokens` data tokens at random positions among noise (token 0),
    then `tokens` copy markers (token 1) at the end; at the i-th marker the model must give the
    i-th data token. Unlike plain copying the spacing varies, so a fixed convolution cannot solve it.
    """

    kind: ClassVar[str] = "selective_copy"
    seq_len: int = 64
    tokens: int = 8
    vocab: int = 16

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.seq_len < 2 * self.tokens:
            raise TaskError(f"selective_copy needs seq_len >= 2 * tokens = {2 * self.tokens}, got {self.seq_len}",
                            "tokens")
        if self.vocab < 3:
            raise TaskError("selective_copy needs vocab >= 3: noise, the marker and one data token", "vocab")

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        body, device = self.seq_len - self.tokens, generator.device
        data = torch.randint(2, self.vocab, (size, self.tokens), generator=generator, device=device)
        positions = torch.sort(_distinct(size, body, self.tokens, generator), dim=1).values
        inputs = torch.zeros(size, self.seq_len, dtype=torch.long, device=device)
        inputs[torch.arange(size, device=device)[:, None], positions] = data
        inputs[:, body:] = 1
        targets = torch.full((size, self.seq_len), IGNORE, dtype=torch.long, device=device)
        targets[:, body:] = data
        return inputs, targets


@dataclass(frozen=True)
class Induction:
    """The induction-heads task of the Mamba paper: random tokens; a trigger (token 1) at a random
    position followed by the answer; the trigger again at the last position, where the model must
    give the answer. One answer a sequence: the trigger appears nowhere else."""

    kind: ClassVar[str] = "induction"
    seq_len: int = 64
    vocab: int = 16

    def __post_init__(self) -> None:
        if self.seq_len < 4:
            raise TaskError(f"induction needs seq_len >= 4, got {self.seq_len}", "seq_len")
        if self.vocab < 3:
            raise TaskError("induction needs vocab >= 3: the trigger and two other tokens", "vocab")

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        device = generator.device
        inputs = torch.randint(2, self.vocab, (size, self.seq_len), generator=generator, device=device)
        trigger = torch.randint(0, self.seq_len - 2, (size,), generator=generator, device=device)
        rows = torch.arange(size, device=device)
        inputs[rows, trigger] = 1
        inputs[:, -1] = 1
        targets = torch.full((size, self.seq_len), IGNORE, dtype=torch.long, device=device)
        targets[:, -1] = inputs[rows, trigger + 1]
        return inputs, targets


@dataclass(frozen=True)
class Permutation:
    """The word problem of the symmetric group S_degree: token t is the t-th permutation of
    `degree` items (in lexicographic order); at every position the model must give the token of
    the composition of all permutations so far. degree 2 is running parity; degree 5 (S5) is
    beyond any fixed-depth linear-time recurrence with positive decay (Merrill et al., 2024)."""

    kind: ClassVar[str] = "permutation"
    seq_len: int = 64
    degree: int = 3

    def __post_init__(self) -> None:
        if not 2 <= self.degree <= 6:
            raise TaskError(f"permutation degree must be from 2 to 6 (6! = 720 tokens), got {self.degree}",
                            "degree")

    @property
    def vocab(self) -> int:
        """One token a permutation."""
        return math.factorial(self.degree)

    def composition_table(self) -> torch.Tensor:
        """table[a, b] = index of (permutation a, then permutation b)."""
        perms = list(itertools.permutations(range(self.degree)))
        index = {p: i for i, p in enumerate(perms)}
        return torch.tensor([[index[tuple(a[i] for i in b)] for b in perms] for a in perms])

    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.composition_table().to(generator.device)
        inputs = torch.randint(0, len(table), (size, self.seq_len), generator=generator, device=generator.device)
        targets = torch.empty_like(inputs)
        state = torch.zeros(size, dtype=torch.long, device=generator.device)  # the identity is permutation 0
        for t in range(self.seq_len):
            state = table[state, inputs[:, t]]
            targets[:, t] = state
        return inputs, targets


Task = MQAR | SelectiveCopy | Induction | Permutation
TASKS: dict[str, type] = {cls.kind: cls for cls in (MQAR, SelectiveCopy, Induction, Permutation)}
# (check, words) per field type, for settings written with the wrong kind of value.
_FIELD_CHECKS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


def make_task(settings: Any, model_vocab: int, max_len: int) -> Task:
    """`mqar(seq_len = 256, pairs = 32)` as plain data -> a task that fits the model.

    MQAR's vocab defaults to the model's, as in Zoology; the other tasks keep their papers'
    small vocabularies. A task whose tokens or length the model cannot take is an error
    here, before anything is built.
    """
    if isinstance(settings, str):
        settings = {"kind": settings}
    if not isinstance(settings, dict) or "kind" not in settings:
        raise TaskError(f"a task is written as a call, e.g. mqar(seq_len = 256, pairs = 32); got {settings!r}",
                        hint=f"tasks: {', '.join(TASKS)}")
    kind = settings["kind"]
    if kind not in TASKS:
        raise TaskError(f"unknown task `{kind}`", hint=did_you_mean(str(kind), TASKS) or f"tasks: {', '.join(TASKS)}")
    cls = TASKS[kind]
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    values = {key: value for key, value in settings.items() if key != "kind"}
    for key, value in values.items():
        if key not in fields:
            raise TaskError(f"task {kind} has no setting `{key}`", key,
                            did_you_mean(key, fields) or f"its settings: {', '.join(fields)}")
        check, words = _FIELD_CHECKS[fields[key]]
        if not check(value):
            raise TaskError(f"task {kind}: `{key}` must be {words}, got {value!r}", key)
    if cls is MQAR:
        values.setdefault("vocab", model_vocab)
    task = cls(**values)
    if task.vocab > model_vocab:
        raise TaskError(f"task {kind} uses {task.vocab} tokens but the model's vocab is {model_vocab}", "vocab")
    if task.seq_len > max_len:
        raise TaskError(f"task {kind} has seq_len {task.seq_len}, longer than the model's max_len {max_len}",
                        "seq_len", f"use seq_len <= {max_len} or raise max_len")
    return task


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of answer positions (targets != IGNORE) whose argmax is the target."""
    mask = targets != IGNORE
    return (logits.argmax(-1)[mask] == targets[mask]).float().mean().item()
