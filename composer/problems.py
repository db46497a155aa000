"""A problem with a spec, found at a data path, and the exception that carries several.

Every check (block inheritance, derived sizes, search holes) reports through these, so the
loader can point each one at the spec's line and column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: tuple
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class KeyProblem(Problem):
    """A problem with a key itself (an unknown parameter): reported at the key, not its value."""


class Problems(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def prefixed(problems: list[Problem], prefix: tuple) -> list[Problem]:
    """The same problems, found inside the part at `prefix`."""
    return [Problem(prefix + p.path, p.message, p.hint) for p in problems]
