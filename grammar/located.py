"""Values that remember where they were written, and the file they were written in.

Lowering builds `Located` values instead of bare data so that `+`, `*` and pattern()
can move elements around and still say, for every element, which text produced it.
At the end a Located gives its plain data (`data`) and its source map (`spans`).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import Any, Iterator

from lark import Token, Tree

from .errors import Span, SpecError

# What a value was written as, in words, for errors about operators and arguments.
ORIGIN_WORDS = {"number": "a number", "string": "a string", "bool": "true or false", "name": "a name",
                "list": "a list", "call": "a call", "ratio": "a ratio(...)", "mapping": "a group of settings"}


@dataclass
class Located:
    """A lowered value: a scalar, a mapping or a sequence of Located parts, and its span.

    `span` is None for values nobody wrote (ratio's default placement). `origin` says what
    was written (see ORIGIN_WORDS): `attn * 3` and `[attn] * 3` differ although both hold
    names. `chars` holds a string's per-character spans, so a pattern letter can be pointed at.
    `key_span` is the span of the key that holds this value (`stat` in `stat = 4`), so an error
    about the key itself can underline the key rather than its value.
    """

    span: Span | None
    scalar: Any = None
    mapping: dict[str, Located] | None = None
    sequence: list[Located] | None = None
    origin: str = "mapping"
    chars: tuple[Span, ...] = ()
    key_span: Span | None = None

    @property
    def data(self) -> Any:
        """The plain value: dicts, lists, str, int, float, bool, None."""
        if self.mapping is not None:
            return {key: part.data for key, part in self.mapping.items()}
        if self.sequence is not None:
            return [part.data for part in self.sequence]
        return self.scalar

    def spans(self, path: tuple) -> Iterator[tuple[tuple, Span]]:
        """(data path, span) for this value and every part of it, below `path`."""
        return self._walk(path, "span")

    def key_spans(self, path: tuple) -> Iterator[tuple[tuple, Span]]:
        """(data path, span of its key) for this value and every part of it that has a key."""
        return self._walk(path, "key_span")

    def _walk(self, path: tuple, which: str) -> Iterator[tuple[tuple, Span]]:
        own = getattr(self, which)
        if own is not None:
            yield path, own
        parts = self.mapping.items() if self.mapping is not None else enumerate(self.sequence or ())
        for key, part in parts:
            yield from part._walk(path + (key,), which)

    def describe(self) -> str:
        return ORIGIN_WORDS.get(self.origin, self.origin)


@dataclass(frozen=True)
class Source:
    """One spec file being lowered: names spans after it and raises errors that show it."""

    filename: str
    text: str

    def span(self, node: Tree | Token) -> Span:
        if isinstance(node, Token):
            return Span(self.filename, node.line, node.column, node.end_line, node.end_column)
        meta = node.meta
        return Span(self.filename, meta.line, meta.column, meta.end_line, meta.end_column)

    def error(self, message: str, at: Tree | Token | Span | None, hint: str | None = None) -> SpecError:
        span = at if isinstance(at, Span) or at is None else self.span(at)
        return SpecError.single(message, span, hint, {self.filename: self.text})

    def check_name(self, token: Token, role: str) -> str:
        """A name that reaches generated Python source (model, block, key): no Python keywords.

        The grammar already limits names to [A-Za-z_][A-Za-z0-9_]*.
        """
        if keyword.iskeyword(token.value):
            raise self.error(f"`{token.value}` is a Python keyword and cannot name a {role}", token,
                             f"names end up in generated Python code; try `{token.value}_`")
        return token.value
