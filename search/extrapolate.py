"""From a small model's layer pattern to a deeper (and wider) one, as Meta's hybrid search (2510.00379) carries
small-model rankings to large models: `stack` repeats the pattern, `stretch` widens each of its layers into a run.

    stack   [s, s, a] to 7 layers -> s s a s s a s     (the pattern again and again, the last copy cut)
    stretch [s, s, a] to 6 layers -> s s s s a a       (layer i of the target is the found layer nearest
                                                         i (n - 1) / (depth - 1))

Stretching keeps the pattern's first and last layers first and last (a last attention layer, as Qwen3-Next and
Kimi Linear place it, stays last); stacking keeps the period. Pure: specs in, specs out.
"""

from __future__ import annotations

from composer.loader import validate
from composer.schedule import layer_names
from composer.spec import Spec

MODES = ("stack", "stretch")


def extend(names: list[str], depth: int, mode: str) -> list[str]:
    """The layer names of `names` carried to `depth` layers by `mode`."""
    if mode not in MODES:
        raise ValueError(f"unknown extrapolation {mode!r}: one of {', '.join(MODES)}")
    if depth < 1:
        raise ValueError(f"a depth is at least 1, got {depth}")
    n = len(names)
    if mode == "stack":
        return [names[i % n] for i in range(depth)]
    if depth == 1:
        return names[:1]
    # i (n - 1) / (depth - 1) rounded half up, in integers
    return [names[(2 * i * (n - 1) + depth - 1) // (2 * (depth - 1))] for i in range(depth)]


def extrapolate(spec: Spec, depth: int, mode: str, d_model: int | None = None) -> Spec:
    """`spec` with its layers carried to `depth` by `mode` (and `d_model` set, when given), checked as `mixc check`
    checks a spec: SpecError where the wider model's sizes do not fit. Named `<name>_<mode><depth>`."""
    data = spec.model_dump()
    data["layers"] = extend(layer_names(spec), depth, mode)
    data["name"] = f"{spec.name}_{mode}{depth}" + (f"_d{d_model}" if d_model is not None else "")
    data["search"] = None
    if d_model is not None:
        data["d_model"] = d_model
    return validate(data)
