"""Spec text to plain data (the JSON form of the typed Spec) plus a source map.

    parse_text(text, filename) / parse_file(path) -> ParsedFile(models, source_map)

`models` maps each model name to plain dicts/lists/scalars; `source_map` maps a data path
("model", "blocks", "ssd", "mixer", "state") to the Span of the text that produced it, so
the typed layer can point its errors at line and column. Every problem is a SpecError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lark import Tree

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


def parse_text(text: str, filename: str = "<string>") -> ParsedFile:
    """Parse spec text; `include` paths are relative to the directory of `filename`."""
    return _Loader().parse_root(text, filename)


def parse_file(path: str | os.PathLike) -> ParsedFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise SpecError.single(f"cannot read spec file {path}: {_reason(exc)}") from None
    return _Loader().parse_root(text, str(path))


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
        if resolved in self.including:
            chain = " -> ".join(p.name for p in self.including[self.including.index(resolved):] + [resolved])
            raise source.error(f"including `{written}` here makes a cycle", include, f"the cycle: {chain}")
        if resolved not in self.units:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                raise source.error(f"cannot include `{written}`: {_reason(exc)}", include.children[0],
                                   f"looked for {path}") from None
            self.including.append(resolved)
            self.units[resolved] = self.load(text, str(path))
            self.including.pop()
        return self.units[resolved]

    def merge(self, into: dict[str, Located], new: dict[str, Located], what: str) -> None:
        """Add named blocks or models; the same one reached twice through includes is fine."""
        for name, value in new.items():
            earlier = into.get(name)
            if earlier is not None and earlier is not value:
                raise SpecError.single(f"{what} `{name}` is defined twice", value.span,
                                       f"first defined at {earlier.span}", self.sources)
            into[name] = value


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
