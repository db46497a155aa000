"""Turn a layer schedule (a list, or a ratio with a placement) into the list of block names.

Deterministic: the same schedule gives the same list on every machine, so a search
trial, a plan and a built module always agree on which layer is which.
"""

from __future__ import annotations

import math

from composer.spec import RatioSchedule, Spec


def placed_count(ratio: RatioSchedule) -> int:
    """How many layers the first-named block gets: its share of depth, rounded half up."""
    weights = list(ratio.ratio.values())
    total = sum(weights)
    share = weights[0] / total if total > 0 else 0.0
    return min(ratio.depth, math.floor(share * ratio.depth + 0.5))


def placed_positions(depth: int, count: int, placement: str) -> list[int]:
    """Indices (0-based) of the `count` placed layers among `depth`."""
    if count <= 0:
        return []
    if placement == "front":
        return list(range(count))
    if placement == "back":
        return list(range(depth - count, depth))
    if placement == "middle":
        start = (depth - count) // 2
        return list(range(start, start + count))
    if placement == "interleaved":
        # One placed layer closes each period: 1:3 over 24 gives "SSSA" * 6.
        return [i for i in range(depth) if (i + 1) * count // depth > i * count // depth]
    if placement == "even":
        # Spread over the whole depth, first and last layer included.
        if count == 1:
            return [depth // 2]
        return sorted({round(j * (depth - 1) / (count - 1)) for j in range(count)})
    raise ValueError(f"unknown placement {placement!r}")


def resolve_ratio(ratio: RatioSchedule) -> list[str]:
    placed, filler = list(ratio.ratio)[:2]
    positions = set(placed_positions(ratio.depth, placed_count(ratio), ratio.placement))
    return [placed if i in positions else filler for i in range(ratio.depth)]


def layer_names(spec: Spec) -> list[str]:
    """The block name of every layer, in order."""
    if isinstance(spec.layers, RatioSchedule):
        return resolve_ratio(spec.layers)
    return list(spec.layers)
