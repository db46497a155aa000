"""Errors that point at the spec text: a span, a message, the line underlined, a hint.

Every stage (parse, validate, plan) raises `SpecError`; nothing else escapes to the user.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"  # or "warning": the spec is valid, but something about it needs saying

    def render(self, sources: dict[str, str]) -> str:
        where = f"{self.span}: " if self.span else ""
        lines = [f"{where}{self.severity}: {self.message}"]
        text = sources.get(self.span.file) if self.span else None
        if text is not None:
            source_lines = text.splitlines()
            if 1 <= self.span.line <= len(source_lines):
                line_text = source_lines[self.span.line - 1]
                gutter = f"{self.span.line:>4} | "
                lines.append(gutter + line_text)
                end = self.span.end_column if self.span.end_line == self.span.line else len(line_text) + 1
                width = max(1, end - self.span.column)
                lines.append(" " * (len(gutter) + self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class SpecError(Exception):
    """One or more problems with a spec, each pointing at its place in the text."""

    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        return "\n\n".join(d.render(self.sources) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()

    @classmethod
    def single(cls, message: str, span: Span | None = None, hint: str | None = None,
               sources: dict[str, str] | None = None) -> "SpecError":
        return cls([Diagnostic(message, span, hint)], dict(sources or {}))


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None
