"""Blocks, models and search sections to Located mappings (the plain data of DESIGN's Spec).

Only what is written appears: defaults belong to the typed layer. Inheritance stays as
data too (`extends`), since resolving it needs the typed blocks.
"""

from __future__ import annotations

from lark import Token, Tree

from .errors import Span, did_you_mean
from .located import Located, Source
from .values import lower_value

# Keys a model body may not set directly: they are written with `model NAME` and `block NAME {}`.
MODEL_OWNED_KEYS = {"name": "the model's name comes from `model NAME { ... }`",
                    "blocks": "blocks are written as `block NAME { ... }` entries"}
SCHEDULE_BUILTINS = ("pattern", "ratio")


class Entries:
    """The settings of one body, in the order written: dotted keys nest, each key is set once."""

    def __init__(self, source: Source):
        self.source = source
        self.root: dict[str, Located] = {}
        self.written: dict[tuple[str, ...], Span] = {}

    def set(self, key: list[tuple[str, Span]], value: Located) -> None:
        """Set `a.b.c` (as (name, span) pairs) to `value`, creating the mappings between."""
        path = tuple(name for name, _ in key)
        self._refuse_overlap(path, key[-1][1])
        self.written[path] = key[-1][1]
        mapping = self.root
        for name, span in key[:-1]:
            mapping = mapping.setdefault(name, Located(span, mapping={})).mapping
        mapping[path[-1]] = value
        value.key_span = key[-1][1]

    def _refuse_overlap(self, path: tuple[str, ...], span: Span) -> None:
        """`a = 1` twice, or `a = f()` with `a.b = 2`: the second would silently replace the first."""
        for earlier, earlier_span in self.written.items():
            shorter = min(len(earlier), len(path))
            if earlier[:shorter] == path[:shorter]:
                dotted, earlier_dotted = ".".join(path), ".".join(earlier)
                message = (f"`{dotted}` is set twice" if earlier == path
                           else f"`{dotted}` overlaps `{earlier_dotted}`")
                raise self.source.error(message, span, f"first set at {earlier_span}")

    def located(self, span: Span | None) -> Located:
        return Located(span, mapping=self.root)


def key_parts(key: Tree, source: Source) -> list[tuple[str, Span]]:
    return [(source.check_name(token, "key"), source.span(token)) for token in key.children]


def add_setting(setting: Tree, entries: Entries, source: Source) -> None:
    """`k = v` -> k: v; `k = v pad_to m` -> k: v, k_pad_to: m."""
    key, value, *pad_to = setting.children
    parts = key_parts(key, source)
    entries.set(parts, lower_value(value, source))
    if pad_to:
        pad_key = parts[:-1] + [(parts[-1][0] + "_pad_to", source.span(pad_to[0]))]
        entries.set(pad_key, lower_value(pad_to[0].children[0], source))


def lower_block(block: Tree, source: Source) -> tuple[Token, Located]:
    """`block NAME [extends BASE] { settings }` -> (NAME token, {"extends": BASE, settings...})."""
    name, *extends, body = block.children
    source.check_name(name, "block")
    entries = Entries(source)
    if extends:
        base = extends[0].children[0]
        entries.set([("extends", source.span(base))], Located(source.span(base), base.value, origin="name"))
    for entry in body.children:
        if entry.data != "setting":
            raise source.error(f"a block cannot hold a `{entry.data}` section", entry,
                               "blocks are defined at the top of a file or inside a model")
        add_setting(entry, entries, source)
    return name, entries.located(source.span(name))


def lower_model(model: Tree, shared_blocks: dict[str, Located], source: Source) -> tuple[Token, Located]:
    """`model NAME { ... }` -> (NAME token, its plain data): name, settings, blocks, search.

    `shared_blocks` are the top-level blocks visible from this file; they come first in
    "blocks", before the model's own, and a model block may not reuse one of their names.
    """
    name, body = model.children
    source.check_name(name, "model")
    entries = Entries(source)
    entries.set([("name", source.span(name))], Located(source.span(name), name.value, origin="name"))
    blocks = Located(None, mapping=dict(shared_blocks))
    for entry in body.children:
        if entry.data == "setting":
            _check_model_setting(entry, source)
            add_setting(entry, entries, source)
        elif entry.data == "block":
            _add_model_block(entry, blocks, entries, source)
        else:
            entries.set([("search", source.span(entry.children[0]))], lower_search(entry, source))
    if "blocks" not in entries.root:
        entries.root["blocks"] = blocks
    return name, entries.located(source.span(name))


def _check_model_setting(setting: Tree, source: Source) -> None:
    key, value = setting.children[:2]
    first = key.children[0]
    if first.value in MODEL_OWNED_KEYS:
        raise source.error(f"`{first.value}` cannot be set with `=`", first, MODEL_OWNED_KEYS[first.value])
    if len(key.children) == 1 and first.value == "layers" and value.data == "call":
        callee = value.children[0]
        if callee.value not in SCHEDULE_BUILTINS:
            raise source.error(f"`layers` cannot be `{callee.value}(...)`", callee,
                               did_you_mean(callee.value, SCHEDULE_BUILTINS)
                               or "layers is a list of block names, pattern(...) or ratio(...)")


def _add_model_block(block: Tree, blocks: Located, entries: Entries, source: Source) -> None:
    name, located = lower_block(block, source)
    if name.value in blocks.mapping:
        first = blocks.mapping[name.value].span
        raise source.error(f"block `{name.value}` is defined twice", name, f"first defined at {first}")
    blocks.mapping[name.value] = located
    # "blocks" takes its place in the data where the first block is written.
    entries.root.setdefault("blocks", blocks)


def lower_search(search: Tree, source: Source) -> Located:
    """`search { path in domain; setting = value }` -> {"space": [...], "settings": {...}}."""
    keyword, *items = search.children
    space: list[Located] = []
    space_paths: dict[str, Span] = {}
    settings = Entries(source)
    for item in items:
        if item.data == "setting":
            add_setting(item, settings, source)
            continue
        entry = _space_entry(item, source)
        path = entry.mapping["path"]
        if path.scalar in space_paths:
            raise source.error(f"`{path.scalar}` is searched twice", path.span,
                               f"first at {space_paths[path.scalar]}")
        space_paths[path.scalar] = path.span
        space.append(entry)
    return Located(source.span(keyword), mapping={"space": Located(None, sequence=space),
                                                  "settings": settings.located(None)})


def _space_entry(space: Tree, source: Source) -> Located:
    """`path in {a, b}` -> {"path", "choices"}; `path in lo .. hi [step s] [log]` -> {"path", "low", ...}."""
    key, domain = space.children
    path = ".".join(token.value for token in key.children)
    entry = {"path": Located(source.span(key), path, origin="string")}
    if domain.data == "choices":
        entry["choices"] = Located(source.span(domain), origin="list",
                                   sequence=[lower_value(choice, source) for choice in domain.children])
        return Located(source.span(space), mapping=entry)
    low, high, *options = domain.children
    entry["low"] = lower_value(low, source)
    entry["high"] = lower_value(high, source)
    for option in options:
        if isinstance(option, Token):  # the `log` keyword
            entry["log"] = Located(source.span(option), True, origin="bool")
        else:
            entry["step"] = lower_value(option.children[0], source)
    return Located(source.span(space), mapping=entry)
