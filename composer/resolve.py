"""Derive what a spec leaves implicit (head counts, inner widths, hidden sizes) and
check that the sizes fit together and fit the kernels.

`resolve(spec)` returns a copy of the spec with every derived field filled in, or
raises `Problems`; each problem carries the data path it is about, so the loader
can point at the spec's line and column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from composer.grammar.errors import did_you_mean
from composer.schedule import layer_names
from composer.spec import (AttentionMixer, Block, LowrankMixer, MLPChannel, MonarchMixer,
                           MonarchMLPChannel, QuasiseparableMixer, RatioSchedule, SemiseparableMixer,
                           Spec, SwiGLUChannel)

MAX_TAYLOR_FEATURE_DIM = 32  # the Taylor map squares it: 1 + f + f^2 features


@dataclass(frozen=True)
class Problem:
    path: tuple
    message: str
    hint: str | None = None


class Problems(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def default_monarch_blocks(n: int) -> int:
    """The divisor of n closest to sqrt(n) from below: the squarest factorisation n = m1 * m2."""
    return max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)


def _inner_heads(mixer, d_model: int, problems: list[Problem]) -> tuple[int, int]:
    """(inner width, heads) for mixers with d_inner = expand * d_model split into head_dim heads."""
    inner = mixer.expand * d_model
    if inner != int(inner):
        problems.append(Problem(("expand",), f"expand {mixer.expand} times d_model {d_model} is not a whole width"))
        return 0, 0
    inner = int(inner)
    if mixer.heads is not None:
        if mixer.heads * mixer.head_dim != inner:
            problems.append(Problem(("heads",), f"heads {mixer.heads} x head_dim {mixer.head_dim} must equal "
                                    f"expand x d_model = {inner}",
                                    hint=f"leave heads out to derive it, or set head_dim = {inner // mixer.heads}"))
        return inner, mixer.heads
    if inner % mixer.head_dim:
        problems.append(Problem(("head_dim",), f"head_dim {mixer.head_dim} does not divide the inner width "
                                f"{inner} (expand x d_model)",
                                hint="pick a head_dim that divides it, e.g. 64"))
        return inner, 0
    return inner, inner // mixer.head_dim


def _check_chunk(chunk: int, problems: list[Problem]) -> None:
    if not (_is_power_of_two(chunk) and 16 <= chunk <= 512):
        problems.append(Problem(("chunk",), f"chunk {chunk} must be a power of two from 16 to 512 (the kernels "
                                "tile it on tensor cores)", hint="use 64, 128 or 256"))


def resolve_attention(m: AttentionMixer, d_model: int, max_len: int, problems: list[Problem]) -> AttentionMixer:
    head_dim = m.head_dim
    if head_dim is None:
        if d_model % m.heads:
            problems.append(Problem(("heads",), f"heads {m.heads} does not divide d_model {d_model}",
                                    hint="set head_dim explicitly, or pick heads dividing d_model"))
            return m
        head_dim = d_model // m.heads
    kv_heads = m.kv_heads or m.heads
    if m.heads % kv_heads:
        problems.append(Problem(("kv_heads",), f"kv_heads {kv_heads} must divide heads {m.heads} (grouped-query attention)"))
    if m.rope and head_dim % 2:
        problems.append(Problem(("head_dim",), f"rope needs an even head_dim, got {head_dim}"))
    if m.window is not None:
        if not m.causal:
            problems.append(Problem(("window",), "a sliding window needs causal = true"))
        if m.window >= max_len:
            problems.append(Problem(("window",), f"window {m.window} must be smaller than max_len {max_len}",
                                    hint="drop the window to attend to the whole context"))
    return m.model_copy(update={"head_dim": head_dim, "kv_heads": kv_heads})


def resolve_state_space(m, d_model: int, problems: list[Problem]):
    _, heads = _inner_heads(m, d_model, problems)
    if heads and heads % m.groups:
        problems.append(Problem(("groups",), f"groups {m.groups} must divide heads {heads}"))
    if m.state % 8:
        problems.append(Problem(("state",), f"state {m.state} must be a multiple of 8 for the kernels"))
    if m.head_dim % 8:
        problems.append(Problem(("head_dim",), f"head_dim {m.head_dim} must be a multiple of 8 for the kernels"))
    if m.conv == 1:
        problems.append(Problem(("conv",), "conv 1 is a per-channel scale, not a convolution",
                                hint="use 0 for no short convolution, or 2 to 8"))
    _check_chunk(m.chunk, problems)
    return m.model_copy(update={"heads": heads or m.heads})


def resolve_lowrank(m: LowrankMixer, d_model: int, problems: list[Problem]) -> LowrankMixer:
    _, heads = _inner_heads(m, d_model, problems)
    feature_dim = m.feature_dim or (16 if m.feature_map == "taylor" else m.head_dim)
    if m.feature_map == "taylor" and feature_dim > MAX_TAYLOR_FEATURE_DIM:
        problems.append(Problem(("feature_dim",), f"the taylor map squares feature_dim: {feature_dim} gives "
                                f"{1 + feature_dim + feature_dim ** 2} features", hint="use 16 (Based) or less"))
    if not m.causal and m.decay != "none":
        problems.append(Problem(("decay",), "decay needs causal = true (it weights the past)"))
    _check_chunk(m.chunk, problems)
    return m.model_copy(update={"heads": heads or m.heads, "feature_dim": feature_dim})


def resolve_monarch(m: MonarchMixer, d_model: int, max_len: int, problems: list[Problem]) -> MonarchMixer:
    blocks = m.blocks or default_monarch_blocks(max_len)
    if max_len % blocks:
        problems.append(Problem(("blocks",), f"blocks {blocks} must divide max_len {max_len}: the Monarch "
                                "matrix factors the sequence length as blocks x (max_len / blocks)",
                                hint=f"use {default_monarch_blocks(max_len)}"))
    if d_model % m.heads:
        problems.append(Problem(("heads",), f"heads {m.heads} must divide d_model {d_model}"))
    return m.model_copy(update={"blocks": blocks})


def resolve_channel(c, d_model: int, problems: list[Problem]):
    if isinstance(c, SwiGLUChannel):
        return c.model_copy(update={"hidden": c.hidden or _round_up(8 * d_model / 3, 64)})
    if isinstance(c, MLPChannel):
        return c.model_copy(update={"hidden": c.hidden or 4 * d_model})
    if isinstance(c, MonarchMLPChannel):
        hidden = c.hidden or 4 * d_model
        for name, width in (("d_model", d_model), ("hidden", hidden)):
            if width % c.blocks:
                problems.append(Problem(("blocks",), f"blocks {c.blocks} must divide {name} {width}"))
        return c.model_copy(update={"hidden": hidden})
    return c


def resolve_mixer(m, d_model: int, max_len: int, problems: list[Problem]):
    if isinstance(m, AttentionMixer):
        return resolve_attention(m, d_model, max_len, problems)
    if isinstance(m, (SemiseparableMixer, QuasiseparableMixer)):
        return resolve_state_space(m, d_model, problems)
    if isinstance(m, LowrankMixer):
        return resolve_lowrank(m, d_model, problems)
    if isinstance(m, MonarchMixer):
        return resolve_monarch(m, d_model, max_len, problems)
    raise TypeError(f"no resolver for mixer {type(m).__name__}")


def _prefixed(problems: list[Problem], prefix: tuple) -> list[Problem]:
    return [Problem(prefix + p.path, p.message, p.hint) for p in problems]


def resolve_block(name: str, block: Block, spec: Spec, problems: list[Problem]) -> Block:
    mixer_problems: list[Problem] = []
    channel_problems: list[Problem] = []
    mixer = resolve_mixer(block.mixer, spec.d_model, spec.max_len, mixer_problems)
    channel = resolve_channel(block.channel, spec.d_model, channel_problems)
    problems += _prefixed(mixer_problems, ("blocks", name, "mixer"))
    problems += _prefixed(channel_problems, ("blocks", name, "channel"))
    return block.model_copy(update={"mixer": mixer, "channel": channel, "norm": block.norm or spec.norm})


def check_schedule(spec: Spec, problems: list[Problem]) -> None:
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
