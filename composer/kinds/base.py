"""The protocol every mixer kind follows: what a kind tells each stage about itself.

A kind is one folder under composer/kinds (or anywhere, registered with `composer.kinds.register`)
holding a `Kind` subclass. The stages only ever ask the registry for a part's kind and call these
methods; none of them names a kind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import ClassVar

from composer.costs import Op
from composer.fields import Strict
from composer.kernels.plan import LayerKernels, Target
from composer.problems import Problem


@dataclass(frozen=True)
class ModelSizes:
    """What a kind's checks and costs may read about the model around one of its layers."""

    d_model: int
    max_len: int
    dtype_bytes: int   # bytes per element of the spec's dtype (caches)
    norm_eps: float    # the block's norm epsilon (layers with an output norm use it too)


@dataclass(frozen=True)
class LayerCall:
    """The constructor call a kind contributes to the generated module: `cls(**kwargs)`, imported from
    `module`. Every value is a number, a bool, None or a checked word, so it can be written as source."""

    module: str
    cls: str
    kwargs: dict = field(default_factory=dict)


class Kind:
    """One sequence-mixer or channel-mixer kind. Subclasses set the class attributes and override the
    methods whose default does not fit."""

    name: ClassVar[str]                  # the spec's word: `mixer = <name>(...)`
    role: ClassVar[str]                  # "sequence" (a block's mixer) or "channel"
    fields: ClassVar[type[Strict]]       # its spec fields, with `kind: Literal[name]`
    attention: ClassVar[bool] = False    # counts as attention in a ratio's attention_fraction
    # Its reference forms, "module:function" each (the definition of correct, kernels/<family>/reference.py).
    references: ClassVar[dict[str, str]] = {}

    def resolve(self, part: Strict, model: ModelSizes, problems: list[Problem]) -> Strict:
        """The part with its derived sizes filled in; problems at paths inside the part."""
        return part

    def costs(self, part: Strict, model: ModelSizes) -> list[Op]:
        """Its ops with closed-form costs (composer.costs); a channel kind with no ops returns []."""
        raise NotImplementedError

    def build_bytes(self, part: Strict, model: ModelSizes) -> int:
        """Memory its layer allocates at build beyond its parameters (tables, masks, and their temporaries)."""
        return 0

    def layer(self, part: Strict, model: ModelSizes) -> LayerCall | None:
        """Its layer in the generated module; None: the block has no such part."""
        raise NotImplementedError

    def cache(self, part: Strict, model: ModelSizes, length: int):
        """Its decoding cache for sequences of up to `length` tokens: a tuple of CacheEntry
        (composer.layers.cache), () for none, or a string saying why the kind cannot decode (bidirectional).
        The default asks its layer class (`cache_layout(length, **constructor arguments)`), so the plan counts
        exactly what the built layer allocates; a layer without `cache_layout` caches nothing."""
        call = self.layer(part, model)
        if call is None:
            return ()
        layout = getattr(getattr(importlib.import_module(call.module), call.cls), "cache_layout", None)
        return () if layout is None else layout(length, **call.kwargs)

    def kernels(self, part: Strict, target: Target) -> LayerKernels:
        """What runs for this part on `target`: generated kernels with every constant, or plain PyTorch
        and why. The default: plain PyTorch, this kind has no generated kernels."""
        return LayerKernels.torch(f"{self.name} has no generated kernels: its layer runs PyTorch ops")

    def layer_type(self, part: Strict) -> str | None:
        """Its word in a Hugging Face config's `layer_types`, which transformers checks against its own list
        (full_attention, sliding_attention, linear_attention, conv, ...); None where none fits."""
        return None

    def summary(self, part: Strict) -> str:
        """A few words for listings and generated comments."""
        return f"{self.name} {'sequence mixer' if self.role == 'sequence' else 'channel mixer'}"
