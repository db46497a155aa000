"""The typed spec: pydantic models for a model, its blocks, mixers and schedule.

This module holds structure and per-field limits only; each mixer kind brings its own fields
(composer.kinds), joined here into one discriminated union per role. Checks that need several
fields at once (head counts against d_model, schedule names against blocks) live in
`composer.resolve`, so every problem can be reported at its own path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from composer.fields import Identifier, PositiveInt, Strict
from composer.kinds import FIELDS, registry  # importing composer.kinds registers the built-in kinds


_Strict = Strict


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

# ── mixers: one discriminated union per role, of the registered kinds' fields (composer.kinds) ────


def _union(role: str):
    members = tuple(FIELDS[role].values())
    return Annotated[Annotated[Union[members], Field(discriminator="kind")], BeforeValidator(_kind_from_name)]


MIXER_KINDS = FIELDS["sequence"]   # kind name -> fields, kept up to date by the registry
CHANNEL_KINDS = FIELDS["channel"]
NORM_KINDS = {cls.model_fields["kind"].default: cls for cls in (RMSNorm, LayerNorm)}

# ── blocks, schedule, search ─────────────────────────────────────────────────


class Block(_Strict):
    """norm -> mixer -> residual -> norm -> channel -> residual; norm defaults to the model's."""

    mixer: Any  # the sequence kinds' union, set by _rebuild_unions
    channel: Any = None  # the channel kinds' union; default `none`
    norm: Norm | None = None


Placement = Literal["interleaved", "even", "front", "back", "middle"]


class RatioSchedule(_Strict):
    """`ratio(attn : ssd = 1 : 3, placement = interleaved) * 24`: counts and positions derived."""

    ratio: dict[Identifier, Annotated[float, Field(ge=0, allow_inf_nan=False)]]  # weights; a search may make them fractions
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


def _rebuild_unions() -> None:
    """Point Block's mixer and channel at the registered kinds and rebuild the models that hold them, so a
    kind registered after import validates like the built-in ones."""
    no_channel = FIELDS["channel"]["none"]() if "none" in FIELDS["channel"] else PydanticUndefined
    for part, role, default in (("mixer", "sequence", PydanticUndefined), ("channel", "channel", no_channel)):
        Block.__pydantic_fields__[part] = FieldInfo.from_annotated_attribute(_union(role), default)
    for model in (Block, Spec):
        model.model_rebuild(force=True)


registry.on_change(_rebuild_unions)
_rebuild_unions()
