"""Render the Python source of a model's module from a resolved spec.

`build` loads this source; a later `export` writes the same source to disk, so
there is one path from spec to module. Every value written into the source is a
number, a bool, a checked identifier or one of a spec field's fixed literals.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Callable

from composer.codegen.render import render_template
from composer.kinds import LayerCall, kind_of
from composer.resolve import model_sizes
from composer.schedule import layer_names
from composer.spec import Spec

# The modules of the runtime around the kinds' layers: the block and model, and the norms.
MODEL_MODULE, NORMS_MODULE = "composer.layers.model", "composer.layers.norms"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def _checked(call: LayerCall) -> LayerCall:
    """A kind's call, if only checked words and literals would reach the source."""
    if not all(_WORD.fullmatch(part) for part in call.module.split(".")) or not _WORD.fullmatch(call.cls):
        raise ValueError(f"layer {call.cls!r} from {call.module!r}: module and class must be dotted identifiers")
    for key, value in call.kwargs.items():
        plain = value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str)
                                                                            and _WORD.fullmatch(value))
        if not _WORD.fullmatch(key) or not plain:
            raise ValueError(f"layer {call.cls}: argument {key}={value!r} is not a number, bool, None or word")
    return call


def part_call(spec: Spec, block, part: str) -> LayerCall | None:
    """The layer a resolved block's mixer or channel contributes, from its kind."""
    value = getattr(block, part)
    call = kind_of(value, "sequence" if part == "mixer" else "channel").layer(value, model_sizes(spec, block))
    return None if call is None else _checked(call)


def norm_class(norm) -> str:
    return "RMSNorm" if norm.kind == "rmsnorm" else "LayerNorm"


def norm_call(norm, width: int) -> str:
    return f"{norm_class(norm)}({width}, eps={norm.eps!r})"


@dataclass(frozen=True)
class _BlockSource:
    name: str
    summary: str
    mixer: str
    norm: str
    channel: str | None


def _summary(block) -> str:
    mixer, channel = kind_of(block.mixer, "sequence"), kind_of(block.channel, "channel")
    return f"{mixer.summary(block.mixer)}, {channel.summary(block.channel)}, pre-{block.norm.kind}"


def _run_length(names: list[str]) -> list[tuple[str, int]]:
    return [(name, len(list(group))) for name, group in itertools.groupby(names)]


def _import_lines(calls: list[LayerCall], norms: set[str], import_name: Callable[[str], str]) -> list[str]:
    modules: dict[str, set[str]] = {MODEL_MODULE: {"Block", "LanguageModel"}, NORMS_MODULE: set(norms)}
    for call in calls:
        modules.setdefault(call.module, set()).add(call.cls)
    lines = {import_name(module): names for module, names in modules.items()}
    return [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(lines.items())]


def _comment_safe(text: str | None) -> str | None:
    """A file name for the header comment: a newline or other control character in it is escaped, so it
    cannot end the comment and start a line of code."""
    if text is None:
        return None
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render_model_source(spec: Spec, origin: str | None = None,
                        import_name: Callable[[str], str] = lambda module: module, prelude: str = "",
                        tail: str = "") -> str:
    """Module source defining `make_model(plans)`; `spec` must be resolved (composer.resolve). import_name: how
    the source names a runtime module (`build` imports them where they are installed; an export, from its own
    package). prelude, tail: an export's further imports and its loading code, after the imports and at the end."""
    schedule = layer_names(spec)
    used = [name for name in spec.blocks if name in schedule]
    blocks, calls = [], []
    for name in used:
        block = spec.blocks[name]
        mixer, channel = part_call(spec, block, "mixer"), part_call(spec, block, "channel")
        calls += [c for c in (mixer, channel) if c is not None]
        blocks.append(_BlockSource(name, _summary(block), _call(mixer.cls, **mixer.kwargs),
                                   norm_call(block.norm, spec.d_model),
                                   None if channel is None else _call(channel.cls, **channel.kwargs)))
    norms = {norm_class(spec.blocks[n].norm) for n in used} | {norm_class(spec.norm)}
    runs = _run_length(schedule)
    rows = [f'*["{name}"] * {count},' if count > 1 else f'"{name}",' for name, count in runs]
    return render_template(
        "model.py.jinja",
        name=spec.name, origin=_comment_safe(origin), d_model=spec.d_model, vocab=spec.vocab, padded_vocab=spec.padded_vocab,
        max_len=spec.max_len, tie_embeddings=spec.tie_embeddings, schedule=schedule,
        schedule_summary=" ".join(f"{name}x{count}" if count > 1 else name for name, count in runs),
        schedule_rows=rows, import_lines=_import_lines(calls, norms, import_name),
        blocks=blocks, final_norm=norm_call(spec.norm, spec.d_model), prelude=prelude.strip("\n"), tail=tail,
    )
