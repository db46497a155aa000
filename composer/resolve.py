"""Derive what a spec leaves implicit (head counts, inner widths, hidden sizes) and check that the
sizes fit together; each mixer kind derives and checks its own part (composer.kinds).

`resolve(spec)` returns a copy of the spec with every derived field filled in, or raises
`Problems`; each problem carries the data path it is about, so the loader can point at the
spec's line and column.
"""

from __future__ import annotations

from composer.grammar.errors import did_you_mean
from composer.kinds import ModelSizes, kind_of
from composer.limits import limit, raise_hint
from composer.problems import Problem, Problems, prefixed
from composer.schedule import layer_names
from composer.spec import Block, RatioSchedule, Spec

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

__all__ = ["Problem", "Problems", "model_sizes", "resolve", "resolve_block", "check_schedule"]


def model_sizes(spec: Spec, block: Block) -> ModelSizes:
    """What a block's kinds may read about the model around them."""
    eps = (block.norm or spec.norm).eps
    return ModelSizes(spec.d_model, spec.max_len, DTYPE_BYTES[spec.dtype], eps)


def resolve_block(name: str, block: Block, spec: Spec, problems: list[Problem]) -> Block:
    model = model_sizes(spec, block)
    parts = {}
    for part, role in (("mixer", "sequence"), ("channel", "channel")):
        found: list[Problem] = []
        parts[part] = kind_of(getattr(block, part), role).resolve(getattr(block, part), model, found)
        problems += prefixed(found, ("blocks", name, part))
    return block.model_copy(update={**parts, "norm": block.norm or spec.norm})


# The generated module defines `make_<block>()` for each block beside `make_model()`.
RESERVED_BLOCK_NAMES = ("model",)


def check_schedule(spec: Spec, problems: list[Problem]) -> None:
    for name in spec.blocks:
        if name in RESERVED_BLOCK_NAMES:
            problems.append(Problem(("blocks", name), f"a block cannot be named `{name}`: the generated module's "
                                    f"make_{name}() builds the whole model", hint=f"rename it, e.g. `{name}_block`"))
    names = list(spec.layers.ratio) if isinstance(spec.layers, RatioSchedule) else list(spec.layers)
    where = ("layers", "ratio") if isinstance(spec.layers, RatioSchedule) else ("layers",)
    if not names:
        problems.append(Problem(("layers",), "the schedule has no layers", hint="e.g. layers = [ssd] * 24"))
    for i, name in enumerate(names):
        if name not in spec.blocks:
            at = where + ((name,) if isinstance(spec.layers, RatioSchedule) else (i,))
            problems.append(Problem(at, f"no block named `{name}`",
                                    hint=did_you_mean(name, spec.blocks) or f"blocks: {', '.join(spec.blocks)}"))
    if isinstance(spec.layers, RatioSchedule):
        if len(names) != 2:
            problems.append(Problem(("layers",), f"ratio takes exactly two block names, got {len(names)}",
                                    hint="write longer mixes as a list or a pattern"))
        elif sum(spec.layers.ratio.values()) <= 0:
            problems.append(Problem(("layers",), "ratio weights are all zero"))
        if spec.layers.depth > limit("items"):
            problems.append(Problem(("layers", "depth"), f"a ratio over {spec.layers.depth:,} layers",
                                    hint=raise_hint("items")))


def resolve(spec: Spec) -> Spec:
    """The spec with derived sizes filled in; raises Problems listing every inconsistency."""
    problems: list[Problem] = []
    check_schedule(spec, problems)
    blocks = {name: resolve_block(name, block, spec, problems) for name, block in spec.blocks.items()}
    if problems:
        raise Problems(problems)
    resolved = spec.model_copy(update={"blocks": blocks})
    if not layer_names(resolved):
        raise Problems([Problem(("layers",), "the schedule resolves to no layers")])
    return resolved
