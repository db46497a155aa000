"""Render the Python source of a model's module from a resolved spec.

`build` loads this source; a later `export` writes the same source to disk, so
there is one path from spec to module. Every value written into the source is a
number, a bool, a checked identifier or one of a spec field's fixed literals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from composer.codegen.render import render_template
from composer.schedule import layer_names
from composer.spec import (AttentionMixer, LowrankMixer, MLPChannel, MonarchMixer, MonarchMLPChannel,
                           QuasiseparableMixer, SemiseparableMixer, Spec, SwiGLUChannel)

RUNTIME = "composer.layers"


LINE_WIDTH = 100
CALL_INDENT = 8  # where the template places a block's constructor calls


def _call(cls_name: str, **kwargs) -> str:
    """`Name(a=1, b=2)`, one argument a line when that is too long for the template's indent."""
    args = [f"{k}={v!r}" for k, v in kwargs.items()]
    one_line = f"{cls_name}({', '.join(args)})"
    if CALL_INDENT + len("channel=") + len(one_line) <= LINE_WIDTH:
        return one_line
    inner = " " * (CALL_INDENT + 4)
    return f"{cls_name}(\n" + "".join(f"{inner}{arg},\n" for arg in args) + " " * CALL_INDENT + ")"


def mixer_call(m, d_model: int, max_len: int, eps: float) -> str:
    if isinstance(m, AttentionMixer):
        return _call("Attention", d_model=d_model, heads=m.heads, kv_heads=m.kv_heads, head_dim=m.head_dim,
                     max_len=max_len, causal=m.causal, window=m.window, rope=m.rope, rope_base=m.rope_base,
                     bias=m.bias)
    if isinstance(m, SemiseparableMixer):
        return _call("Mamba2", d_model=d_model, heads=m.heads, head_dim=m.head_dim, state=m.state, groups=m.groups,
                     chunk=m.chunk, conv=m.conv, decay=m.decay, gate=m.gate, out_norm=m.out_norm, skip=m.skip,
                     bias=m.bias, eps=eps)
    if isinstance(m, QuasiseparableMixer):
        return _call("Hydra", d_model=d_model, heads=m.heads, head_dim=m.head_dim, state=m.state, groups=m.groups,
                     chunk=m.chunk, conv=m.conv, gate=m.gate, out_norm=m.out_norm, skip=m.skip, bias=m.bias,
                     eps=eps)
    if isinstance(m, LowrankMixer):
        return _call("LinearAttention", d_model=d_model, heads=m.heads, head_dim=m.head_dim,
                     feature_dim=m.feature_dim, feature_map=m.feature_map, causal=m.causal, normalize=m.normalize,
                     decay=m.decay, chunk=m.chunk)
    if isinstance(m, MonarchMixer):
        return _call("MonarchMixer", d_model=d_model, max_len=max_len, blocks=m.blocks, heads=m.heads,
                     causal=m.causal, gate=m.gate)
    raise TypeError(f"no layer for mixer {type(m).__name__}")


def channel_call(c, d_model: int) -> str | None:
    if isinstance(c, MLPChannel):
        return _call("MLP", d_model=d_model, hidden=c.hidden, activation=c.activation, bias=c.bias)
    if isinstance(c, SwiGLUChannel):
        return _call("SwiGLU", d_model=d_model, hidden=c.hidden, bias=c.bias)
    if isinstance(c, MonarchMLPChannel):
        return _call("MonarchMLP", d_model=d_model, hidden=c.hidden, blocks=c.blocks, activation=c.activation,
                     bias=c.bias)
    return None


def norm_call(norm, width: int) -> str:
    return f"{'RMSNorm' if norm.kind == 'rmsnorm' else 'LayerNorm'}({width}, eps={norm.eps!r})"


@dataclass(frozen=True)
class _BlockSource:
    name: str
    summary: str
    mixer: str
    norm: str
    channel: str | None


def _summary(block) -> str:
    channel = "no channel mixer" if block.channel.kind == "none" else f"{block.channel.kind} channel mixer"
    return f"{block.mixer.kind} sequence mixer, {channel}, pre-{block.norm.kind}"


def _run_length(names: list[str]) -> list[tuple[str, int]]:
    return [(name, len(list(group))) for name, group in itertools.groupby(names)]


def render_model_source(spec: Spec, origin: str | None = None, runtime: str = RUNTIME) -> str:
    """Module source defining `make_model()`; `spec` must be resolved (composer.resolve)."""
    schedule = layer_names(spec)
    used = [name for name in spec.blocks if name in schedule]
    blocks = [
        _BlockSource(name, _summary(block), mixer_call(block.mixer, spec.d_model, spec.max_len, block.norm.eps),
                     norm_call(block.norm, spec.d_model), channel_call(block.channel, spec.d_model))
        for name, block in ((n, spec.blocks[n]) for n in used)
    ]
    source_text = "\n".join(b.mixer + (b.channel or "") + b.norm for b in blocks) + norm_call(spec.norm, spec.d_model)
    imports = sorted({"Block", "LanguageModel"} | {
        word for word in ("Attention", "Mamba2", "Hydra", "LinearAttention", "MonarchMixer", "MLP", "SwiGLU",
                          "MonarchMLP", "RMSNorm", "LayerNorm") if f"{word}(" in source_text})
    runs = _run_length(schedule)
    rows = [f'*["{name}"] * {count},' if count > 1 else f'"{name}",' for name, count in runs]
    return render_template(
        "model.py.jinja",
        name=spec.name, origin=origin, d_model=spec.d_model, vocab=spec.vocab, padded_vocab=spec.padded_vocab,
        max_len=spec.max_len, tie_embeddings=spec.tie_embeddings, schedule=schedule,
        schedule_summary=" ".join(f"{name}x{count}" if count > 1 else name for name, count in runs),
        schedule_rows=rows, imports=imports, runtime=runtime, blocks=blocks,
        final_norm=norm_call(spec.norm, spec.d_model),
    )
