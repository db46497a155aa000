"""Value subtrees to Located values: numbers with units, strings, lists, calls, `+`, `*`,
and the two schedule builtins, pattern() and ratio(), which are evaluated here.

`+` and `*` are evaluated at parse time so the data holds what the text means:
`[ssd] * 24` is a list of 24 names, each still pointing at the `ssd` it came from.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Callable

from lark import Token, Tree

from composer.limits import limit, raise_hint

from .errors import Span, did_you_mean
from .located import Located, Source

UNITS = {"k": 10**3, "M": 10**6, "B": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
UNITS_HINT = "units: k, M, B (powers of 1000) and Ki, Mi, Gi (powers of 1024), as in 2Ki"
NUMBER_PARTS = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(.*)")
# A number literal longer than this means nothing a spec could use (and int() refuses past 4300 digits).
MAX_NUMBER_CHARS = 100
RATIO_PARAMETERS = ("placement", "depth")
RATIO_SYNTAX = "e.g. ratio(attn : ssm = 1 : 3, placement = interleaved) * 24"
PATTERN_SYNTAX = 'e.g. pattern("SSSA" * 6, S = ssm, A = attn)'


def lower_value(node: Tree, source: Source) -> Located:
    return VALUE_LOWERERS[node.data](node, source)


def _number(node: Tree, source: Source) -> Located:
    token = node.children[0]
    if len(token.value) > MAX_NUMBER_CHARS:
        raise source.error(f"a number literal of {len(token.value):,} characters", token,
                           f"numbers in a spec are at most {MAX_NUMBER_CHARS} characters long")
    digits, unit = NUMBER_PARTS.fullmatch(token.value).groups()
    if unit and unit not in UNITS:
        raise source.error(f"unknown unit `{unit}` in `{token.value}`", token,
                           did_you_mean(unit, UNITS) or UNITS_HINT)
    # float() of an absurdly long literal is inf, never an error, so this check is safe.
    if not math.isfinite(float(digits) * UNITS.get(unit, 1)):
        raise source.error(f"`{token.value}` is too large a number", token)
    return Located(source.span(token), _number_value(digits, unit), origin="number")


def _number_value(digits: str, unit: str) -> int | float:
    """`768` -> int, `1e-5` and `0.5` -> float; with a unit, an int whenever exact (`1.5k` -> 1500)."""
    if not unit:
        return int(digits) if digits.lstrip("-").isdigit() else float(digits)
    exact = Decimal(digits) * UNITS[unit]
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def _string(node: Tree, source: Source) -> Located:
    return lower_string(node.children[0], source)


def lower_string(token: Token, source: Source) -> Located:
    """A backslash makes the next character literal (`\\"`, `\\\\`); there are no other escapes."""
    raw = token.value[1:-1]
    if len(raw) > limit("literal_chars"):
        raise source.error(f"a string literal of {len(raw):,} characters", token, raise_hint("literal_chars"))
    chars, spans = [], []
    index, column = 0, token.column + 1
    while index < len(raw):
        width = 2 if raw[index] == "\\" else 1
        chars.append(raw[index + width - 1])
        spans.append(Span(source.filename, token.line, column, token.line, column + width))
        index, column = index + width, column + width
    return Located(source.span(token), "".join(chars), origin="string", chars=tuple(spans))


def _name(node: Tree, source: Source) -> Located:
    return Located(source.span(node), node.children[0].value, origin="name")


def _true(node: Tree, source: Source) -> Located:
    return Located(source.span(node), True, origin="bool")


def _false(node: Tree, source: Source) -> Located:
    return Located(source.span(node), False, origin="bool")


def _list(node: Tree, source: Source) -> Located:
    return Located(source.span(node), sequence=[lower_value(item, source) for item in node.children],
                   origin="list")


def _call(node: Tree, source: Source) -> Located:
    """`name(k = v, ...)` -> {"kind": "name", "k": v, ...}; pattern() and ratio() are evaluated."""
    callee, *args = node.children
    if callee.value in BUILTINS:
        return BUILTINS[callee.value](node, args, source)
    entries = {"kind": Located(source.span(callee), callee.value, origin="name")}
    for arg in args:
        if not _is_kwarg(arg):
            raise source.error(f"`{callee.value}(...)` takes only `name = value` arguments", arg,
                               did_you_mean(callee.value, BUILTINS)
                               or "only pattern(...) and ratio(...) take other arguments")
        _add_kwarg(entries, arg, source)
    return Located(source.span(node), mapping=entries, origin="call")


def _is_kwarg(arg: Tree) -> bool:
    return arg.data == "kwarg"


def _add_kwarg(entries: dict[str, Located], arg: Tree, source: Source) -> None:
    name, value = arg.children
    key = source.check_name(name, "parameter")
    if key in entries:
        why = "the call's name sets `kind`" if key == "kind" else f"`{key}` is already given"
        raise source.error(f"`{key}` is given twice", name, why)
    entries[key] = lower_value(value, source)
    entries[key].key_span = source.span(name)


def _pattern(node: Tree, args: list[Tree], source: Source) -> Located:
    """pattern("SSSA" * 6, S = ssm, A = attn): one block name per letter; spaces only group."""
    positional = [arg for arg in args if not _is_kwarg(arg)]
    if len(positional) != 1 or positional[0].data == "ratio_arg":
        raise source.error("pattern(...) takes one string and then its legend", node, PATTERN_SYNTAX)
    text = lower_value(positional[0], source)
    if text.origin != "string":
        raise source.error(f"pattern(...) needs a string of letters, not {text.describe()}",
                           positional[0], PATTERN_SYNTAX)
    legend = _pattern_legend([arg for arg in args if _is_kwarg(arg)], source)
    layers = []
    for letter, letter_span in zip(text.scalar, text.chars):
        if letter == " ":
            continue
        if letter not in legend:
            known = ", ".join(f"{key} = {block.scalar}" for key, block in legend.items())
            raise source.error(f"`{letter}` is not in the pattern's legend", letter_span,
                               f"the legend is: {known}" if known else PATTERN_SYNTAX)
        layers.append(Located(letter_span, legend[letter].scalar, origin="name"))
    return Located(source.span(node), sequence=layers, origin="list")


def _pattern_legend(kwargs: list[Tree], source: Source) -> dict[str, Located]:
    legend: dict[str, Located] = {}
    for arg in kwargs:
        letter, value = arg.children
        if len(letter.value) != 1:
            raise source.error(f"a pattern legend maps one letter to a block, not `{letter.value}`",
                               letter, PATTERN_SYNTAX)
        if letter.value in legend:
            raise source.error(f"`{letter.value}` is given twice in the legend", letter)
        block = lower_value(value, source)
        if block.origin != "name":
            raise source.error(f"`{letter.value}` must name a block, not {block.describe()}", value)
        legend[letter.value] = block
    return legend


def _ratio(node: Tree, args: list[Tree], source: Source) -> Located:
    """ratio(a : b = 1 : 3, placement = p, depth = n) -> {"ratio", "placement", "depth"}.

    Unwritten placement and depth are filled in (interleaved, None) so that `* n` has a
    depth to set; they get no span.
    """
    if not args or args[0].data != "ratio_arg":
        raise source.error("ratio(...) starts with the blocks and their shares", node, RATIO_SYNTAX)
    entries = {"ratio": _ratio_shares(args[0], source),
               "placement": Located(None, "interleaved", origin="name"),
               "depth": Located(None, None, origin="number")}
    given: set[str] = set()
    for arg in args[1:]:
        if not _is_kwarg(arg):
            raise source.error("after the shares, ratio(...) takes only placement = ... and depth = ...",
                               arg, RATIO_SYNTAX)
        name, value = arg.children
        if name.value not in RATIO_PARAMETERS:
            raise source.error(f"ratio(...) has no parameter `{name.value}`", name,
                               did_you_mean(name.value, RATIO_PARAMETERS) or "it takes placement and depth")
        if name.value in given:
            raise source.error(f"`{name.value}` is given twice", name)
        given.add(name.value)
        entries[name.value] = lower_value(value, source)
    return Located(source.span(node), mapping=entries, origin="ratio")


def _ratio_shares(arg: Tree, source: Source) -> Located:
    """`attn : ssm = 1 : 3` -> {"attn": 1, "ssm": 3}; the names are tokens, the shares subtrees."""
    names = [child for child in arg.children if isinstance(child, Token)]
    shares = [child for child in arg.children if isinstance(child, Tree)]
    if len(names) != len(shares):
        raise source.error(f"the ratio names {len(names)} blocks but gives {len(shares)} shares", arg,
                           RATIO_SYNTAX)
    entries: dict[str, Located] = {}
    for name, share_node in zip(names, shares):
        if name.value in entries:
            raise source.error(f"`{name.value}` appears twice in the ratio", name)
        share = lower_value(share_node, source)
        if not _is_count(share) or share.scalar < 1:
            raise source.error("a ratio share is a positive whole number", share_node, RATIO_SYNTAX)
        entries[name.value] = share
    return Located(source.span(arg), mapping=entries)


def _is_count(value: Located) -> bool:
    return value.origin == "number" and isinstance(value.scalar, int)


def _sum(node: Tree, source: Source) -> Located:
    """`a + b + c`: concatenation of lists, or of quoted strings."""
    total, *rest = (lower_value(child, source) for child in node.children)
    for operand in rest:
        total = _concatenate(total, operand, node, source)
    return total


def _concatenate(left: Located, right: Located, node: Tree, source: Source) -> Located:
    if left.origin == right.origin == "list":
        _check_length(len(left.sequence) + len(right.sequence), node, source)
        _check_nodes(nodes(left) + nodes(right), node, source)
        return Located(source.span(node), sequence=left.sequence + right.sequence, origin="list")
    if left.origin == right.origin == "string":
        _check_length(len(left.scalar) + len(right.scalar), node, source)
        return Located(source.span(node), left.scalar + right.scalar, origin="string",
                       chars=left.chars + right.chars)
    hint = "write block names in a list: [attn] + [ssm]" if "name" in (left.origin, right.origin) else None
    raise source.error(f"`+` joins two lists or two strings, not {left.describe()} and {right.describe()}",
                       node, hint)


def _product(node: Tree, source: Source) -> Located:
    """`x * n`: repeats a list or a quoted string, or sets the depth of a ratio(...)."""
    total, *rest = (lower_value(child, source) for child in node.children)
    for operand in rest:
        total = _repeat(total, operand, node, source)
    return total


def _repeat(left: Located, right: Located, node: Tree, source: Source) -> Located:
    repeated, count = (right, left) if _is_count(left) and not _is_count(right) else (left, right)
    if not _is_count(count) or count.scalar < 0:
        raise source.error(f"`*` repeats by a whole number of times, not {count.describe()}", node)
    if repeated.origin == "ratio":
        return _with_depth(repeated, count, node, source)
    if repeated.origin == "list":
        _check_length(len(repeated.sequence) * count.scalar, node, source)
        _check_nodes(nodes(repeated) * count.scalar, node, source)
        return Located(source.span(node), sequence=repeated.sequence * count.scalar, origin="list")
    if repeated.origin == "string":
        _check_length(len(repeated.scalar) * count.scalar, node, source)
        return Located(source.span(node), repeated.scalar * count.scalar, origin="string",
                       chars=repeated.chars * count.scalar)
    hint = "write block names in a list: [ssd] * 24" if repeated.origin == "name" else None
    raise source.error(f"`*` repeats a list, a string or a ratio(...), not {repeated.describe()}", node, hint)


def _with_depth(ratio: Located, count: Located, node: Tree, source: Source) -> Located:
    if ratio.mapping["depth"].span is not None:
        raise source.error("the ratio's depth is given twice, by `depth =` and by `*`", node)
    if count.scalar < 1:
        raise source.error("a ratio's depth is a positive whole number", count.span)
    return Located(source.span(node), mapping={**ratio.mapping, "depth": count}, origin="ratio")


def _check_length(length: int, node: Tree, source: Source) -> None:
    """Checked before the list is built, so that `[x] * 10**12` fails fast instead of eating memory."""
    if length > limit("items"):
        raise source.error(f"this makes {length:,} items; at most {limit('items'):,} are allowed", node,
                           raise_hint("items"))


def nodes(value: Located, memo: dict[int, int] | None = None) -> int:
    """Values in `value` once every repeated part is copied out (as the data later is), counted
    once per distinct Located: `[[[x] * 9999] * 9999] * 9999` is measured, never built."""
    memo = {} if memo is None else memo
    if id(value) not in memo:
        children = value.sequence if value.sequence is not None else list((value.mapping or {}).values())
        memo[id(value)] = 1 + sum(nodes(child, memo) for child in children)
    return memo[id(value)]


def _check_nodes(count: int, node: Tree, source: Source) -> None:
    if count > limit("value_nodes"):
        raise source.error(f"this value expands to {count:,} values", node, raise_hint("value_nodes"))


BUILTINS: dict[str, Callable[[Tree, list[Tree], Source], Located]] = {"pattern": _pattern, "ratio": _ratio}
VALUE_LOWERERS: dict[str, Callable[[Tree, Source], Located]] = {
    "number": _number, "string": _string, "name": _name, "true": _true, "false": _false,
    "list": _list, "call": _call, "sum": _sum, "product": _product,
}
