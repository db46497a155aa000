"""Ratio schedules resolve deterministically to layer lists."""

import pytest

from composer.holes import assign
from composer.schedule import placed_positions, resolve_ratio
from composer.spec import RatioSchedule
import composer

from .conftest import small_spec_data


def letters(placement: str, ratio=(1, 3), depth: int = 24) -> str:
    schedule = RatioSchedule(ratio={"A": ratio[0], "S": ratio[1]}, placement=placement, depth=depth)
    return "".join(resolve_ratio(schedule))


def test_interleaved_one_to_three_is_sssa_repeated():
    assert letters("interleaved") == "SSSA" * 6


@pytest.mark.parametrize("placement, expected", [
    ("front", "AAAAAA" + "S" * 18),
    ("back", "S" * 18 + "AAAAAA"),
    ("middle", "S" * 9 + "AAAAAA" + "S" * 9),
])
def test_blocked_placements(placement, expected):
    assert letters(placement) == expected


def test_even_placement_includes_both_ends():
    layout = letters("even")
    assert layout[0] == "A" and layout[-1] == "A" and layout.count("A") == 6


@pytest.mark.parametrize("placement", ["interleaved", "even", "front", "back", "middle"])
@pytest.mark.parametrize("depth, count", [(1, 1), (7, 2), (12, 5), (10, 0), (5, 5)])
def test_every_placement_places_exactly_the_count(placement, depth, count):
    positions = placed_positions(depth, count, placement)
    assert len(positions) == len(set(positions)) == count
    assert all(0 <= p < depth for p in positions)


def test_rounding_of_shares_is_half_up():
    assert letters("front", (1, 1), depth=5).count("A") == 3
    assert letters("front", (0, 1), depth=5).count("A") == 0


def test_attention_fraction_hole_rewrites_the_ratio():
    data = small_spec_data(layers={"ratio": {"attn": 1, "ssd": 3}, "depth": 8})
    spec = composer.validate(data)
    changed = composer.validate(assign(spec, "attention_fraction", 0.5))
    assert changed.layers.ratio == {"attn": 0.5, "ssd": 0.5}
    assert composer.plan(changed).layers[1].block == "attn"
