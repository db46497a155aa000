"""The typed spec: pydantic models for a model, its blocks, mixers and schedule.

This module holds structure and per-field limits only. Checks that need several
fields at once (head counts against d_model, schedule names against blocks) live
in `composer.checks`, so every problem can be reported at its own path.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag


def _check_identifier(name: str) -> str:
    # Names reach generated source: only plain identifiers get through.
    if not name.isidentifier() or not name.isascii() or keyword.iskeyword(name):
        raise ValueError(f"`{name}` is not a valid name: use letters, digits and _, not a Python keyword")
    return name


def _none_word(value: Any) -> Any:
    """The DSL has no null literal: `window = none` means "not set"."""
    return None if value == "none" else value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
PositiveInt = Annotated[int, Field(gt=0)]
OptionalPositiveInt = Annotated[PositiveInt | None, BeforeValidator(_none_word)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _kind_from_name(value: Any) -> Any:
    """`channel = none` and `norm = rmsnorm` name a kind with default parameters."""
    return {"kind": value} if isinstance(value, str) else value


# ── norms ────────────────────────────────────────────────────────────────────

class RMSNorm(_Strict):
    kind: Literal["rmsnorm"] = "rmsnorm"
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-5


class LayerNorm(_Strict):
    kind: Literal["layernorm"] = "layernorm"
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-5


Norm = Annotated[
    Annotated[Union[RMSNorm, LayerNorm], Field(discriminator="kind")],
    BeforeValidator(_kind_from_name),
]

# ── sequence mixers ──────────────────────────────────────────────────────────


class AttentionMixer(_Strict):
    """Softmax attention; head_dim defaults to d_model / heads, kv_heads to heads (GQA when fewer)."""

    kind: Literal["attention"] = "attention"
    heads: PositiveInt
    kv_heads: OptionalPositiveInt = None
    head_dim: OptionalPositiveInt = None
    causal: bool = True
    window: OptionalPositiveInt = None
    rope: bool = True
    rope_base: Annotated[float, Field(gt=0)] = 10000.0
    bias: bool = False


class _StateSpaceFields(_Strict):
    """What Mamba-2 SSD and Hydra share: d_inner = expand * d_model, heads = d_inner / head_dim."""

    state: Annotated[int, Field(ge=1, le=256)] = 128
    head_dim: Annotated[int, Field(ge=1, le=256)] = 64
    heads: OptionalPositiveInt = None
    expand: Annotated[float, Field(gt=0, le=8)] = 2
    groups: PositiveInt = 1
    chunk: Annotated[int, Field(ge=1, le=1024)] = 256
    conv: Annotated[int, Field(ge=0, le=8)] = 4
    gate: bool = True
    out_norm: bool = True
    skip: bool = True
    bias: bool = False


class SemiseparableMixer(_StateSpaceFields):
    """Mamba-2 SSD: decay `data` (a_t = exp(dt_t A)), `fixed` (one learned decay per head, RetNet) or `none`."""

    kind: Literal["semiseparable"] = "semiseparable"
    decay: Literal["none", "fixed", "data"] = "data"


class QuasiseparableMixer(_StateSpaceFields):
    """Hydra: a forward and a reversed semiseparable half plus a diagonal; bidirectional."""

    kind: Literal["quasiseparable"] = "quasiseparable"


class LowrankMixer(_Strict):
    """Linear attention phi(Q) phi(K)^T V; decay `fixed` gives a RetNet-style per-head decay."""

    kind: Literal["lowrank"] = "lowrank"
    heads: OptionalPositiveInt = None
    head_dim: PositiveInt = 64
    feature_dim: OptionalPositiveInt = None
    feature_map: Literal["elu", "relu", "identity", "taylor", "softmax"] = "elu"
    expand: Annotated[float, Field(gt=0, le=8)] = 1
    causal: bool = True
    normalize: bool = True
    decay: Literal["none", "fixed"] = "none"
    chunk: Annotated[int, Field(ge=1, le=1024)] = 64


class MonarchMixer(_Strict):
    """M2-style gated Monarch mixing along the sequence: y = out(gate * M v), M = P^T L P R per channel group."""

    kind: Literal["monarch"] = "monarch"
    blocks: OptionalPositiveInt = None
    heads: PositiveInt = 1
    causal: bool = False
    gate: bool = True


Mixer = Annotated[
    Annotated[
        Union[AttentionMixer, SemiseparableMixer, QuasiseparableMixer, LowrankMixer, MonarchMixer],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_from_name),
]

# ── channel mixers ───────────────────────────────────────────────────────────

Activation = Literal["gelu", "relu", "silu"]


class MLPChannel(_Strict):
    kind: Literal["mlp"] = "mlp"
    hidden: OptionalPositiveInt = None  # 4 * d_model
    activation: Activation = "gelu"
    bias: bool = False


class SwiGLUChannel(_Strict):
    kind: Literal["swiglu"] = "swiglu"
    hidden: OptionalPositiveInt = None  # 8/3 * d_model rounded up to a multiple of 64
    bias: bool = False


class MonarchMLPChannel(_Strict):
    """An MLP whose two dense maps are Monarch matrices with `blocks` diagonal blocks each (M2)."""

    kind: Literal["monarch_mlp"] = "monarch_mlp"
    hidden: OptionalPositiveInt = None  # 4 * d_model
    blocks: PositiveInt = 4
    activation: Activation = "gelu"
    bias: bool = True


class NoChannel(_Strict):
    kind: Literal["none"] = "none"


Channel = Annotated[
    Annotated[
        Union[MLPChannel, SwiGLUChannel, MonarchMLPChannel, NoChannel],
        Field(discriminator="kind"),
    ],
    BeforeValidator(_kind_from_name),
]

MIXER_KINDS = {cls.model_fields["kind"].default: cls for cls in
               (AttentionMixer, SemiseparableMixer, QuasiseparableMixer, LowrankMixer, MonarchMixer)}
CHANNEL_KINDS = {cls.model_fields["kind"].default: cls for cls in
                 (MLPChannel, SwiGLUChannel, MonarchMLPChannel, NoChannel)}
NORM_KINDS = {cls.model_fields["kind"].default: cls for cls in (RMSNorm, LayerNorm)}

# ── blocks, schedule, search ─────────────────────────────────────────────────


class Block(_Strict):
    """norm -> mixer -> residual -> norm -> channel -> residual; norm defaults to the model's."""

    mixer: Mixer
    channel: Channel = NoChannel()
    norm: Norm | None = None


Placement = Literal["interleaved", "even", "front", "back", "middle"]


class RatioSchedule(_Strict):
    """`ratio(attn : ssd = 1 : 3, placement = interleaved) * 24`: counts and positions derived."""

    ratio: dict[Identifier, Annotated[float, Field(ge=0)]]  # weights; a search may make them fractions
    placement: Placement = "interleaved"
    depth: PositiveInt


def _layers_form(value: Any) -> str:
    return "ratio" if isinstance(value, (dict, RatioSchedule)) else "list"


# A list of block names, or a ratio resolved to one by `composer.schedule`.
Layers = Annotated[
    Union[Annotated[list[Identifier], Tag("list")], Annotated[RatioSchedule, Tag("ratio")]],
    Discriminator(_layers_form),
]


class SearchParam(_Strict):
    """One hole: `path in {a, b}` (choices) or `path in low .. high [step s] [log]` (a range)."""

    path: str
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False


class Search(_Strict):
    space: list[SearchParam] = []
    settings: dict[str, Any] = {}


class Spec(_Strict):
    """A whole model: embedding -> schedule of blocks -> norm -> head."""

    name: Identifier
    d_model: Annotated[int, Field(ge=8, le=65536)]
    vocab: Annotated[int, Field(ge=2)]
    vocab_pad_to: PositiveInt = 1
    norm: Norm = RMSNorm()
    tie_embeddings: bool = True
    max_len: Annotated[int, Field(ge=1)] = 2048
    dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    blocks: dict[Identifier, Block]
    layers: Layers
    search: Search | None = None

    @property
    def padded_vocab(self) -> int:
        return -(-self.vocab // self.vocab_pad_to) * self.vocab_pad_to
