"""Size limits on spec input, checked on the data before anything is expanded or allocated.

Each has a stated default and an environment variable that raises it (a positive integer):

| limit              | default  | variable                      | bounds                                        |
| ------------------ | -------- | ----------------------------- | --------------------------------------------- |
| file_bytes         | 1 MiB    | COMPOSER_MAX_FILE_BYTES       | a spec file or an included file               |
| items              | 10,000   | COMPOSER_MAX_ITEMS            | one list or string after `+` and `*` (layers) |
| value_nodes        | 100,000  | COMPOSER_MAX_VALUE_NODES      | a value (or a JSON/YAML file) fully expanded  |
| literal_chars      | 10,000   | COMPOSER_MAX_LITERAL_CHARS    | one number or string literal as written       |
| depth              | 64       | COMPOSER_MAX_DEPTH            | brackets or mappings nested in one another    |
| monarch_len        | 65,536   | COMPOSER_MAX_MONARCH_LEN      | max_len of a model with a Monarch mixer       |
| build_bytes        | RAM      | COMPOSER_MAX_BUILD_BYTES      | the planned parameter memory of one `build`   |

A spec over a limit is a located SpecError that names the limit and its variable.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "file_bytes": 1 << 20,
    "items": 10_000,
    "value_nodes": 100_000,
    "literal_chars": 10_000,
    "depth": 64,
    "monarch_len": 1 << 16,
}


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def variable(name: str) -> str:
    return f"COMPOSER_MAX_{name.upper()}"


def limit(name: str) -> int:
    """The limit's value: its environment variable when set to a positive integer, else the default."""
    written = os.environ.get(variable(name), "")
    if written.strip().isdigit() and int(written) > 0:
        return int(written)
    return _physical_memory() if name == "build_bytes" else DEFAULTS[name]


def raise_hint(name: str) -> str:
    return f"the limit is {limit(name):,}; set {variable(name)} to raise it"


def expanded_nodes(value, memo: dict[int, int] | None = None) -> int:
    """Nodes of plain data (dicts, lists, scalars) as if every shared part were copied out,
    computed once per distinct object, so a YAML alias bomb costs its text's size to measure."""
    memo = {} if memo is None else memo
    stack, order = [value], []
    while stack:  # iterative post-order: deep data must not hit the recursion limit here
        node = stack.pop()
        if id(node) in memo or not isinstance(node, (dict, list)):
            continue
        memo[id(node)] = -1
        order.append(node)
        stack.extend(node.values() if isinstance(node, dict) else node)
    for node in reversed(order):
        children = node.values() if isinstance(node, dict) else node
        memo[id(node)] = 1 + sum(memo.get(id(c), 1) if isinstance(c, (dict, list)) else 1 for c in children)
    return memo.get(id(value), 1)


def nesting_depth(value) -> int:
    """How deeply dicts and lists nest in plain data, without recursion."""
    deepest, stack, seen = 0, [(value, 1)], set()
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in (node.values() if isinstance(node, dict) else node))
    return deepest
