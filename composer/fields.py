"""Field types every part of a spec shares: the strict base model, checked names, positive sizes.

Mixer kinds build their spec fields from these (composer.kinds); the spec itself (composer.spec)
adds the model, its blocks and its schedule.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


# Names become module, file and function names of the generated source: long ones fail on file systems.
MAX_NAME_CHARS = 64


def _check_identifier(name: str) -> str:
    # Names reach generated source: only plain identifiers get through.
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a name of {len(name)} characters is too long: at most {MAX_NAME_CHARS}")
    if not name.isidentifier() or not name.isascii() or keyword.iskeyword(name):
        raise ValueError(f"`{name}` is not a valid name: use letters, digits and _, not a Python keyword")
    return name


def _none_word(value: Any) -> Any:
    """The DSL has no null literal: `window = none` means "not set"."""
    return None if value == "none" else value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
PositiveInt = Annotated[int, Field(gt=0)]
OptionalPositiveInt = Annotated[PositiveInt | None, BeforeValidator(_none_word)]
Expand = Annotated[float, Field(gt=0, le=8)]
ChunkLength = Annotated[int, Field(ge=1, le=1024)]


class Strict(BaseModel):
    """Unknown fields are errors, and a checked part never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
