"""The open choices of a spec: which paths a `search` section may name, and how a
value is put in at one of them.

`assign(spec, path, value)` is what a search trial uses to turn the spec with holes
into a concrete spec; the loader uses the same function to check, before any
training, that every written choice gives a valid spec.
"""

from __future__ import annotations

import copy
import re

from composer.kinds import kind_of
from composer.schedule import layer_names
from composer.spec import RatioSchedule, Spec

# Hyperparameters of training, not of the architecture: a search may vary them,
# they leave the spec as it is.
TRAINING_HOLES = frozenset({"lr", "weight_decay", "batch_size", "steps", "warmup", "seed"})
SCHEDULE_HOLES = frozenset({"attention_fraction", "placement", "depth"})
MODEL_HOLES = frozenset({"d_model", "max_len"})
# `layer_3 in {attn, ssd}`: which block layer 3 is, the per-layer placement a search can make irregular (as
# Jet-Nemotron's search does); the point is written back as a list schedule, the same syntax a user writes.
LAYER_HOLE = re.compile(r"layer_([0-9]+)")


def layer_hole(path: str) -> int | None:
    """The layer index a `layer_N` path names, or None for any other path."""
    match = LAYER_HOLE.fullmatch(path)
    return int(match.group(1)) if match else None


class HoleError(ValueError):
    """A path that names nothing, or a value that does not fit there; the message says why."""


def hole_paths(spec: Spec) -> list[str]:
    """Every path a search may name in this spec (for listings and did-you-mean hints)."""
    paths = sorted(MODEL_HOLES | TRAINING_HOLES)
    if isinstance(spec.layers, RatioSchedule):
        paths += sorted(SCHEDULE_HOLES)
    paths += [f"layer_{i}" for i in range(len(layer_names(spec)))]
    for name, block in spec.blocks.items():
        for part in ("mixer", "channel"):
            fields = set(type(getattr(block, part)).model_fields) - {"kind"}
            paths += [f"{name}.{part}.{field}" for field in sorted(fields)]
    return paths


def attention_block_in_ratio(spec: Spec) -> str:
    ratio = spec.layers.ratio
    for name in ratio:
        if name in spec.blocks and kind_of(spec.blocks[name].mixer, "sequence").attention:
            return name
    raise HoleError("attention_fraction needs an attention block in the ratio")


def _assign_schedule(spec: Spec, data: dict, path: str, value) -> None:
    if not isinstance(spec.layers, RatioSchedule):
        raise HoleError(f"`{path}` needs a ratio schedule, e.g. layers = ratio(attn : ssd = 1 : 3) * 24")
    if path == "attention_fraction":
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise HoleError(f"attention_fraction must be a number from 0 to 1, got {value!r}")
        attention = attention_block_in_ratio(spec)
        data["layers"]["ratio"] = {name: (value if name == attention else 1.0 - value)
                                   for name in spec.layers.ratio}
    else:
        data["layers"][path] = value


def _assign_layer(spec: Spec, data: dict, index: int, value) -> None:
    """Layer `index` becomes block `value`; a ratio schedule is first written out as its list of layers."""
    names = layer_names(spec)
    if index >= len(names):
        raise HoleError(f"`layer_{index}` names no layer: the schedule has {len(names)} (layer_0 to "
                        f"layer_{len(names) - 1})")
    if not isinstance(value, str) or value not in spec.blocks:
        raise HoleError(f"layer_{index} takes a block name, one of {', '.join(sorted(spec.blocks))}; got {value!r}")
    names[index] = value
    data["layers"] = names


def assign(spec: Spec, path: str, value) -> dict:
    """The spec's data with `value` put at `path` (to be validated by the caller)."""
    data = spec.model_dump()
    if path in TRAINING_HOLES:
        return data
    if path in SCHEDULE_HOLES:
        _assign_schedule(spec, data, path, value)
        return data
    if path in MODEL_HOLES:
        data[path] = value
        return data
    index = layer_hole(path)
    if index is not None:
        _assign_layer(spec, data, index, value)
        return data
    parts = path.split(".")
    if len(parts) == 3 and parts[0] in spec.blocks and parts[1] in ("mixer", "channel"):
        block, part, field = parts
        target = data["blocks"][block][part]
        if field == "kind" or field not in type(getattr(spec.blocks[block], part)).model_fields:
            raise HoleError(f"`{field}` is not a parameter of block `{block}`'s {part} ({target['kind']})")
        target[field] = copy.deepcopy(value)
        return data
    raise HoleError(f"`{path}` names nothing in this spec")
