"""Spec text to plain data (the JSON form of the typed Spec) plus a source map.

    parse_text(text, filename) / parse_file(path) -> ParsedFile(models, source_map)

`models` maps each model name to plain dicts/lists/scalars; `source_map` maps a data path
("model", "blocks", "ssd", "mixer", "state") to the Span of the text that produced it, so
the typed layer can point its errors at line and column. Every problem is a SpecError.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lark import Tree

from composer.limits import limit, raise_hint

from .errors import Span, SpecError
from .located import Located, Source
from .lowering import lower_block, lower_model
from .syntax import parse_tree
from .values import lower_string


@dataclass
class SourceMap:
    spans: dict[tuple, Span] = field(default_factory=dict)  # data path -> span
    sources: dict[str, str] = field(default_factory=dict)  # filename -> full text (for underlining)
    key_spans: dict[tuple, Span] = field(default_factory=dict)  # data path -> span of the key holding it

    def span_at(self, path: tuple) -> Span | None:
        """The span of the longest prefix of `path` that has one: defaults and derived
        values have no text of their own, so they point at what holds them."""
        path = tuple(path)
        for length in range(len(path), 0, -1):
            span = self.spans.get(path[:length])
            if span is not None:
                return span
        return None

    def key_span_at(self, path: tuple) -> Span | None:
        """The span of the key written for `path` (`stat` in `stat = 4`); else `span_at(path)`."""
        return self.key_spans.get(tuple(path)) or self.span_at(path)


@dataclass
class ParsedFile:
    models: dict[str, dict]  # model name -> plain data
    source_map: SourceMap  # paths are ("<model name>", ...data path...)


class ReadError(Exception):
    """A spec file that cannot be read as one: not a regular file, too large, not UTF-8."""


def read_text_file(path: Path) -> str:
    """A spec file's text: a regular file (no directory, device, FIFO or /proc entry), at most
    `file_bytes` long, UTF-8. Opened without blocking and checked on the open descriptor, so a FIFO
    put there after a check cannot hang the read. The error never holds the file's contents."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # a NUL byte in the name is a ValueError
        raise ReadError(_reason(exc)) from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise ReadError("it is a directory" if stat.S_ISDIR(info.st_mode) else "it is not a regular file")
    with os.fdopen(descriptor, "rb") as file:
        cap = limit("file_bytes")
        if info.st_size > cap:
            raise ReadError(f"it holds {info.st_size:,} bytes, over the spec file limit ({raise_hint('file_bytes')})")
        data = file.read(cap + 1)
    if len(data) > cap:
        raise ReadError(f"it holds over {cap:,} bytes ({raise_hint('file_bytes')})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"it is not UTF-8 text (byte {exc.start:,} is not valid UTF-8)") from None


def check_text_size(text: str, filename: str) -> None:
    if len(text) > limit("file_bytes"):
        raise SpecError.single(f"{filename}: {len(text):,} characters, over the spec file limit",
                               hint=raise_hint("file_bytes"))


def parse_text(text: str, filename: str = "<string>") -> ParsedFile:
    """Parse spec text; `include` paths are relative to the directory of `filename`."""
    check_text_size(text, filename)
    return _Loader().parse_root(text, filename)


def parse_file(path: str | os.PathLike) -> ParsedFile:
    path = Path(path)
    try:
        text = read_text_file(path)
    except ReadError as exc:
        raise SpecError.single(f"cannot read spec file {shown_name(path)}: {exc}") from None
    return _Loader().parse_root(text, str(path))


def shown_name(path: Path | str) -> str:
    """A file name as an error prints it: control characters (a newline) escaped."""
    text = str(path)
    return repr(text)[1:-1] if any(ord(c) < 32 or c == "\x7f" for c in text) else text


def include_dirs(spec_dir: Path) -> list[Path]:
    """Where `include` may read: the including spec's folder and below, and the folders named in
    COMPOSER_INCLUDE_PATH (separated by the system's path separator, as PATH)."""
    extra = [Path(p) for p in os.environ.get("COMPOSER_INCLUDE_PATH", "").split(os.pathsep) if p]
    return [spec_dir.resolve()] + [p.resolve() for p in extra]


@dataclass
class _FileUnit:
    """What one file gives its includers: its top-level blocks (its includes' first) and models."""

    blocks: dict[str, Located]
    models: dict[str, Located]


class _Loader:
    """Parses a file and, depth first, the files it includes; each file once."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.including: list[Path] = []  # the chain of files being read, to report a cycle
        self.units: dict[Path, _FileUnit] = {}  # a file included twice (a diamond) is read once

    def parse_root(self, text: str, filename: str) -> ParsedFile:
        self.including.append(Path(filename).resolve())
        unit = self.load(text, filename)
        if not unit.models:
            raise SpecError.single(f"no model in {filename}", Span(filename, 1, 1, 1, 1),
                                   "a spec file defines at least one `model NAME { ... }`", self.sources)
        source_map = SourceMap(sources=self.sources)
        for name, model in unit.models.items():
            source_map.spans.update(model.spans((name,)))
            source_map.key_spans.update(model.key_spans((name,)))
        return ParsedFile({name: model.data for name, model in unit.models.items()}, source_map)

    def load(self, text: str, filename: str) -> _FileUnit:
        self.sources[filename] = text
        source = Source(filename, text)
        tree = parse_tree(text, filename)
        included = _FileUnit({}, {})
        own_blocks: dict[str, Located] = {}
        model_nodes = []
        for item in tree.children:
            if item.data == "include":
                unit = self.include(item, source)
                self.merge(included.blocks, unit.blocks, "block")
                self.merge(included.models, unit.models, "model")
            elif item.data == "block":
                name, block = lower_block(item, source)
                self.merge(own_blocks, {name.value: block}, "block")
            else:
                model_nodes.append(item)
        blocks = dict(included.blocks)
        self.merge(blocks, own_blocks, "block")
        models = dict(included.models)
        for node in model_nodes:
            name, model = lower_model(node, blocks, source)
            self.merge(models, {name.value: model}, "model")
        return _FileUnit(blocks, models)

    def include(self, include: Tree, source: Source) -> _FileUnit:
        written = lower_string(include.children[0], source).scalar
        path = Path(source.filename).parent / written
        try:
            resolved = path.resolve()
        except (OSError, ValueError) as exc:  # a NUL byte in the name is a ValueError
            raise source.error(f"cannot include `{written}`: {_reason(exc)}", include.children[0]) from None
        allowed = include_dirs(self.including[0].parent)
        if not any(resolved.is_relative_to(folder) for folder in allowed):
            raise source.error(f"cannot include `{written}`: it is outside the spec's folder",
                               include.children[0], "include files inside the spec's folder, or name another "
                               "folder in COMPOSER_INCLUDE_PATH")
        if resolved in self.including:
            chain = " -> ".join(p.name for p in self.including[self.including.index(resolved):] + [resolved])
            raise source.error(f"including `{written}` here makes a cycle", include, f"the cycle: {chain}")
        if resolved not in self.units:
            try:
                text = read_text_file(resolved)
            except ReadError as exc:
                raise source.error(f"cannot include `{written}`: {exc}", include.children[0]) from None
            self.including.append(resolved)
            try:
                self.units[resolved] = self.load(text, str(path))
            except SpecError as exc:
                raise self._included_error(exc, written, include, source) from None
            self.including.pop()
        return self.units[resolved]

    def _included_error(self, exc: SpecError, written: str, include: Tree, source: Source) -> SpecError:
        """An included file not named .mix that does not even parse may be no spec at all (a password
        file): say where its first problem is, at the `include`, and show none of its text."""
        first = exc.diagnostics[0]
        if (Path(written).suffix == ".mix" or first.span is None or first.span.file == source.filename
                or not _is_syntax(first.message)):
            return exc
        return source.error(f"cannot include `{written}`: it is not a spec file (syntax error at its line "
                            f"{first.span.line}, column {first.span.column})", include.children[0])

    def merge(self, into: dict[str, Located], new: dict[str, Located], what: str) -> None:
        """Add named blocks or models; the same one reached twice through includes is fine."""
        for name, value in new.items():
            earlier = into.get(name)
            if earlier is not None and earlier is not value:
                raise SpecError.single(f"{what} `{name}` is defined twice", value.span,
                                       f"first defined at {earlier.span}", self.sources)
            into[name] = value


def _is_syntax(message: str) -> bool:
    return message.startswith(("unexpected", "expected", "brackets nest", "unterminated", "syntax"))


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
