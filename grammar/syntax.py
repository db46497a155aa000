"""Text to lark parse tree, with every lark error turned into a SpecError.

Lark stays inside this module: callers get a `Tree` (whose nodes carry positions) or a
SpecError that names file:line:column, underlines the offending text and, where it can,
says what was expected in plain words and which keyword a misspelt name was meant to be.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from .errors import Span, SpecError, did_you_mean

OPENERS = {"LPAR": "(", "LSQB": "[", "LBRACE": "{"}
CLOSERS = {"RPAR": "LPAR", "RSQB": "LSQB", "RBRACE": "LBRACE"}
CLOSING_TEXT = {"LPAR": ")", "LSQB": "]", "LBRACE": "}"}
SEPARATORS = ("_NEWLINE", "SEMICOLON")
# Deeper nesting than this is no hand-written spec; refusing it keeps lowering's recursion bounded.
MAX_NESTING = 64
KEYWORDS = ("include", "model", "block", "extends", "search", "pad_to", "in", "step", "log", "true", "false")
# The keywords that start an entry: a misspelt one is read as a key, so the error comes one token later.
ENTRY_KEYWORDS = ("include", "model", "block", "search")
# Terminals with no literal spelling, in the words an error message uses for them.
TERMINAL_WORDS = {"NAME": "a name", "NUMBER": "a number", "STRING": "a quoted string",
                  "_SEP": "a new line", "$END": "the end of the file"}
TOKEN_NOUNS = {"NAME": "name", "NUMBER": "number", "STRING": "string"}
VALUE_STARTS = {"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "LSQB", "LPAR"}


class NestingTooDeep(Exception):
    """Raised by the postlexer; carries the bracket that went one level too deep."""

    def __init__(self, token: Token):
        super().__init__(token)
        self.token = token


class Separators:
    """Lark postlexer: newlines separate entries, except inside brackets (see spec.lark)."""

    always_accept = SEPARATORS

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        open_kinds: list[str] = []  # "(", "[", "set" or "body" for each bracket still open
        after_separator = True  # at the file start and after a body's `{`, separators are noise
        previous_type = None
        for token in stream:
            if token.type in SEPARATORS:
                inside_brackets = open_kinds and open_kinds[-1] != "body"
                if after_separator or (token.type == "_NEWLINE" and inside_brackets):
                    continue
                after_separator = True
                yield Token.new_borrow_pos("_SEP", token.value, token)
                continue
            if token.type in OPENERS:
                open_kinds.append(_bracket_kind(token, previous_type))
                if len(open_kinds) > MAX_NESTING:
                    raise NestingTooDeep(token)
            elif token.type in CLOSERS and open_kinds:
                open_kinds.pop()
            after_separator = open_kinds[-1:] == ["body"] and token.type == "LBRACE"
            previous_type = token.type
            yield token


def _bracket_kind(token: Token, previous_type: str | None) -> str:
    """A `{` right after `in` opens a choice set (a list); any other `{` opens a body of entries."""
    if token.type != "LBRACE":
        return OPENERS[token.type]
    return "set" if previous_type == "IN" else "body"


@functools.cache
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "spec.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                postlex=Separators(), maybe_placeholders=False)


def parse_tree(text: str, filename: str) -> Tree:
    """The parse tree of one file, or a SpecError pointing at the first syntax problem."""
    parser = _lark().parse_interactive(text)
    seen: list[Token] = []
    try:
        for token in parser.iter_parse():
            seen.append(token)
        return parser.feed_eof(seen[-1] if seen else None)
    except NestingTooDeep as exc:
        raise SpecError.single("brackets nest too deeply", _token_span(exc.token, filename),
                               f"at most {MAX_NESTING} levels of (), [] and {{}}",
                               {filename: text}) from None
    except UnexpectedInput as exc:
        # The parser's own view of what may come next: the lexer's `expected` is a superset
        # (LALR shares states between contexts, and the postlexer's separators are in it).
        raise _syntax_error(exc, parser.accepts(), seen, text, filename) from None


def _syntax_error(exc: UnexpectedInput, expected: set[str], seen: list[Token], text: str,
                  filename: str) -> SpecError:
    sources = {filename: text}
    if isinstance(exc, UnexpectedCharacters):
        return SpecError.single(*_unexpected_character(exc, text, filename), sources=sources)
    assert isinstance(exc, UnexpectedToken)
    # iter_parse hands out a token before feeding it, so a token the parser refused is in `seen`.
    accepted = seen[:-1] if seen and seen[-1] is exc.token else seen
    unclosed = _unclosed_bracket(accepted)
    if exc.token.type == "$END":
        return SpecError.single(*_unexpected_end(expected, unclosed, text, filename), sources=sources)
    token = exc.token
    expected_words = _expected_words(expected)
    message = f"unexpected {_describe(token)}" + (f"; expected {expected_words}" if expected_words else "")
    hint = _keyword_hint(token, expected, accepted) or _unclosed_hint(unclosed, token, filename)
    return SpecError.single(message, _token_span(token, filename), hint, sources)


def _unexpected_character(exc: UnexpectedCharacters, text: str, filename: str) -> tuple:
    char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
    span = Span(filename, exc.line, exc.column, exc.line, exc.column + 1)
    if char == '"':
        return "unterminated string", span, 'a string ends with `"` on the same line'
    if char == "-":
        return "`-` must be followed by a number", span, "write negative numbers as `-3`, with no space"
    return f"unexpected character `{char}`", span, None


def _unexpected_end(expected: set[str], unclosed: Token | None, text: str, filename: str) -> tuple:
    if unclosed is not None:
        return (f"`{unclosed.value}` is never closed", _token_span(unclosed, filename),
                f"add the matching `{CLOSING_TEXT[unclosed.type]}`")
    expected_words = _expected_words(expected)
    return ("unexpected end of file" + (f"; expected {expected_words}" if expected_words else ""),
            _end_span(text, filename), None)


def _describe(token: Token) -> str:
    if token.type == "_SEP":
        return "end of line" if token.value != ";" else "`;`"
    if token.type in TOKEN_NOUNS:
        return f"{TOKEN_NOUNS[token.type]} `{token.value}`"
    return f"`{token.value}`"


def _expected_words(expected: set[str]) -> str:
    """Terminal names in plain words: "`.` or `=`", "a value", "a new line"."""
    names = set(expected)
    words = []
    if VALUE_STARTS <= names:
        names -= VALUE_STARTS
        words.append("a value")
    literals = _literal_terminals()
    words += sorted(f"`{literals[name]}`" for name in names if name in literals)
    words += [word for name, word in TERMINAL_WORDS.items() if name in names]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


@functools.cache
def _literal_terminals() -> dict[str, str]:
    """Terminal name -> its literal text, for the terminals spelt as a fixed string."""
    return {t.name: t.pattern.value for t in _lark().terminals if isinstance(t.pattern, PatternStr)}


def _keyword_hint(token: Token, expected: set[str], accepted: list[Token]) -> str | None:
    """Did-you-mean for a misspelt keyword: the unexpected name itself (`modle x {`), or
    the name just before it, which the parser took as a key (`blok x {` fails at `x`)."""
    literals = _literal_terminals()
    expected_keywords = [literals[name] for name in expected if literals.get(name) in KEYWORDS]
    if token.type == "NAME" and expected_keywords:
        hint = did_you_mean(token.value, expected_keywords)
        if hint:
            return hint
    if accepted and accepted[-1].type == "NAME" and token.type in ("NAME", "LBRACE"):
        return did_you_mean(accepted[-1].value, ENTRY_KEYWORDS)
    return None


def _unclosed_bracket(seen: list[Token]) -> Token | None:
    """The innermost bracket still open after the tokens the parser accepted."""
    stack: list[Token] = []
    for token in seen:
        if token.type in OPENERS:
            stack.append(token)
        elif token.type in CLOSERS and stack:
            stack.pop()
    return stack[-1] if stack else None


def _unclosed_hint(unclosed: Token | None, token: Token, filename: str) -> str | None:
    """Past an open `(` or `[` newlines are ignored, so the error shows up lines later."""
    if unclosed is None or unclosed.type == "LBRACE" or unclosed.line == token.line:
        return None
    return f"the `{unclosed.value}` at {_token_span(unclosed, filename)} is not closed"


def _token_span(token: Token, filename: str) -> Span:
    end_line = token.end_line if token.end_line is not None else token.line
    end_column = token.end_column if token.end_column is not None else token.column + 1
    return Span(filename, token.line, token.column, end_line, end_column)


def _end_span(text: str, filename: str) -> Span:
    """Just past the last written character: a span on a trailing empty line would show nothing."""
    written = text.rstrip()
    line = written.count("\n") + 1
    column = len(written) - (written.rfind("\n") + 1) + 1
    return Span(filename, line, column, line, column + 1)
