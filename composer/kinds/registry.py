"""The registry of mixer kinds: every stage looks a part's kind up here.

`register(kind)` adds a kind and rebuilds the spec's discriminated unions (composer.spec listens),
so a kind registered at run time, from any package, is checked, planned, built and trained like
the built-in ones.
"""

from __future__ import annotations

from typing import Callable

from composer.kinds.base import Kind

ROLES = ("sequence", "channel")

# Per role, kind name -> its spec fields (the unions' members, in registration order). The dicts are
# updated in place, so holders of a reference see kinds registered later.
FIELDS: dict[str, dict[str, type]] = {role: {} for role in ROLES}
_KINDS: dict[tuple[str, str], Kind] = {}
_LISTENERS: list[Callable[[], None]] = []


def register(kind: Kind) -> Kind:
    """Add `kind` (replacing one of the same role and name) and tell the listeners."""
    if kind.role not in ROLES:
        raise ValueError(f"kind {kind.name!r}: role must be one of {ROLES}, got {kind.role!r}")
    declared = kind.fields.model_fields.get("kind")
    if declared is None or declared.default != kind.name:
        raise ValueError(f"kind {kind.name!r}: its fields need `kind: Literal[{kind.name!r}] = {kind.name!r}`")
    _KINDS[(kind.role, kind.name)] = kind
    FIELDS[kind.role][kind.name] = kind.fields
    for listener in _LISTENERS:
        listener()
    return kind


def unregister(role: str, name: str) -> None:
    """Remove a kind (tests that register their own clean up with this)."""
    _KINDS.pop((role, name), None)
    FIELDS[role].pop(name, None)
    for listener in _LISTENERS:
        listener()


def on_change(listener: Callable[[], None]) -> None:
    _LISTENERS.append(listener)


def kind_of(part, role: str | None = None) -> Kind:
    """The kind of a typed part (a block's mixer or channel)."""
    roles = (role,) if role else ROLES
    for r in roles:
        kind = _KINDS.get((r, part.kind))
        if kind is not None and isinstance(part, kind.fields):
            return kind
    raise KeyError(f"no registered kind for {type(part).__name__} (kind {part.kind!r})")


def kinds(role: str) -> list[Kind]:
    return [kind for (r, _), kind in _KINDS.items() if r == role]
