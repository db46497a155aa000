"""A Spec back to DSL text: `to_mix(spec)` re-parses (composer.loads) to the same spec.

What a search writes out as its best models, and what a person reads: only the values
that differ from their defaults are written, in the order the typed spec declares them,
so the text looks like a hand-written spec, not a dump. Blocks are written inside the
model, already merged with what they `extends`, so the file stands alone.

Ratio schedules: the DSL takes whole, positive shares (`ratio(attn : ssd = 1 : 3)`), while
a search writes fractions (attention_fraction 0.3 gives 0.3 : 0.7). A fractional ratio is
written with the layer counts it resolves to (`ratio(attn : ssd = 1 : 3) * 4` for 0.3 over
4 layers: composer.schedule rounds the share to a count), and a ratio that leaves one
block out entirely as the plain list of layers; either gives the same layers.
"""

from __future__ import annotations

import keyword
import math
from typing import Any

from pydantic import BaseModel

from composer.schedule import layer_names, placed_count
from composer.spec import RatioSchedule, Search, Spec

INDENT = "  "
# Names the DSL reads as something other than a name: a string with one of these is quoted.
RESERVED_WORDS = {"true", "false", "include", "model", "block", "extends", "search", "pad_to", "in",
                  "step", "log"}
# Spec fields written by the model's header and body structure, not as `name = value`.
STRUCTURAL_FIELDS = {"name", "vocab_pad_to", "blocks", "layers", "search"}


def format_value(value: Any) -> str:
    """One value as DSL text: numbers, true/false, names, strings, lists, calls."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no DSL spelling")
        return repr(value)  # shortest text that reads back as the same float: 1e-05, 0.3
    if isinstance(value, str):
        return value if _is_plain_name(value) else _quoted(value)
    if isinstance(value, BaseModel):
        return format_call(_written_fields(value))
    if isinstance(value, dict):
        if "kind" not in value or not _is_plain_name(str(value["kind"])):
            raise ValueError(f"a mapping is written as a call and needs a `kind` name: {value!r}")
        return format_call(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    raise ValueError(f"{type(value).__name__} {value!r} has no DSL spelling")


def format_call(fields: dict[str, Any]) -> str:
    """{"kind": "mqar", "pairs": 8} -> `mqar(pairs = 8)`; no arguments -> the bare name."""
    arguments = [f"{key} = {format_value(value)}" for key, value in fields.items() if key != "kind"]
    return f"{fields['kind']}({', '.join(arguments)})" if arguments else str(fields["kind"])


def _is_plain_name(text: str) -> bool:
    return (text.isidentifier() and text.isascii() and not keyword.iskeyword(text)
            and text not in RESERVED_WORDS)


def _quoted(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"a DSL string cannot hold a line break: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _written_fields(model: BaseModel) -> dict[str, Any]:
    """The fields that differ from their defaults; `kind` first when the model has one."""
    fields = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name == "kind" or field.is_required() or value != field.get_default(call_default_factory=True):
            fields[name] = value
    return fields


def format_layers(spec: Spec) -> str:
    """The schedule: a ratio(...) with whole shares, or the list of layers, repeats folded."""
    layers = spec.layers
    if isinstance(layers, RatioSchedule):
        names, weights = list(layers.ratio), list(layers.ratio.values())
        if not all(float(w).is_integer() and w >= 1 for w in weights):
            placed = placed_count(layers)
            weights = [placed, layers.depth - placed]
        if len(names) == 2 and min(weights) >= 1:
            shares = " : ".join(str(int(w)) for w in weights)
            return (f"ratio({' : '.join(names)} = {shares}, placement = {layers.placement}) "
                    f"* {layers.depth}")
    return _folded_list(layer_names(spec))


def _folded_list(names: list[str]) -> str:
    """`[ssd, ssd, attn, ssd, ssd, attn]` -> `[ssd, ssd, attn] * 2`: the shortest repeating period."""
    for period in range(1, len(names) + 1):
        if len(names) % period == 0 and names == names[:period] * (len(names) // period):
            repeats = len(names) // period
            listed = "[" + ", ".join(names[:period]) + "]"
            return listed if repeats == 1 else f"{listed} * {repeats}"
    return "[]"


def _settings_lines(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """Search settings; a mapping without a `kind` is written as dotted keys (`a.b = 1`)."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, dict) and "kind" not in value:
            lines += _settings_lines(value, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key} = {format_value(value)}")
    return lines


def _search_lines(search: Search) -> list[str]:
    lines = []
    for param in search.space:
        if param.choices is not None:
            domain = "{" + ", ".join(format_value(choice) for choice in param.choices) + "}"
        else:
            domain = f"{format_value(param.low)} .. {format_value(param.high)}"
            if param.step is not None:
                domain += f" step {format_value(param.step)}"
            if param.log:
                domain += " log"
        lines.append(f"{param.path} in {domain}")
    return lines + _settings_lines(search.settings)


def to_mix(spec: Spec, header: str | None = None) -> str:
    """The spec as a self-contained .mix file; `header` becomes a leading comment."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    lines.append(f"model {spec.name} {{")
    for name, value in _written_fields(spec).items():
        if name in STRUCTURAL_FIELDS:
            continue
        text = f"{INDENT}{name} = {format_value(value)}"
        if name == "vocab" and spec.vocab_pad_to != 1:
            text += f" pad_to {spec.vocab_pad_to}"
        lines.append(text)
    for block_name, block in spec.blocks.items():
        lines.append("")
        lines.append(f"{INDENT}block {block_name} {{")
        for part, value in _written_fields(block).items():
            lines.append(f"{INDENT * 2}{part} = {format_value(value)}")
        lines.append(f"{INDENT}}}")
    lines += ["", f"{INDENT}layers = {format_layers(spec)}"]
    if spec.search is not None:
        lines += ["", f"{INDENT}search {{"]
        lines += [f"{INDENT * 2}{line}" for line in _search_lines(spec.search)]
        lines.append(f"{INDENT}}}")
    lines.append("}")
    return "\n".join(lines) + "\n"
