"""`channel = none`: a block with a sequence mixer alone."""

from __future__ import annotations

from typing import Literal

from composer.fields import Strict
from composer.kinds.base import Kind


class NoChannel(Strict):
    kind: Literal["none"] = "none"


class NoneChannel(Kind):
    name, role, fields = "none", "channel", NoChannel

    def costs(self, c, model):
        return []

    def layer(self, c, model):
        return None

    def summary(self, c):
        return "no channel mixer"
