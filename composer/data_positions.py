"""Where each value of a JSON or YAML spec is written, as the DSL's SourceMap gives it for .mix files.

    source_map_of(text, filename, root, is_json) -> SourceMap | None

The data itself comes from json.loads or yaml.safe_load, whose semantics stay the spec's (JSON's
numbers and its last-one-wins duplicate keys); this only reads positions, from the node tree YAML
composes (JSON text is YAML flow syntax, so the same marks serve both). Where YAML cannot compose
the text the map is None and errors name the data path instead.
"""

from __future__ import annotations

import yaml

from composer.grammar.errors import Span
from composer.grammar.parser import SourceMap


def _span(node: yaml.Node, filename: str) -> Span:
    start, end = node.start_mark, node.end_mark  # 0-based; end exclusive
    return Span(filename, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class _Walker:
    def __init__(self, filename: str, source_map: SourceMap):
        self.filename, self.source_map = filename, source_map
        self.constructor = yaml.SafeLoader("")  # builds a key as safe_load would (`1:` is an int key)
        self.visiting: set[int] = set()  # aliases may make a node its own descendant

    def walk(self, node: yaml.Node, path: tuple) -> None:
        self.source_map.spans[path] = _span(node, self.filename)
        if id(node) in self.visiting:
            return
        self.visiting.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:  # a repeated key: the last one wins, as in the data
                key = self.key(key_node)
                if key is not None:
                    self.source_map.key_spans[path + (key,)] = _span(key_node, self.filename)
                    self.walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, path + (index,))
        self.visiting.discard(id(node))

    def key(self, node: yaml.Node):
        if not isinstance(node, yaml.ScalarNode):
            return None
        try:
            key = self.constructor.construct_object(node, deep=True)
            hash(key)
        except (yaml.YAMLError, TypeError):
            return None
        return key


def source_map_of(text: str, filename: str, root: tuple = (), is_json: bool = False) -> SourceMap | None:
    """Spans of every value and key in `text` (JSON or YAML), at data paths below `root`."""
    # A tab in JSON text is only ever whitespace (strings escape theirs), which YAML refuses as
    # indentation; a space in its place keeps every column.
    composed = text.replace("\t", " ") if is_json else text
    try:
        node = yaml.compose(composed, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    source_map = SourceMap(sources={filename: text})
    if node is not None:
        _Walker(filename, source_map).walk(node, tuple(root))
    return source_map
