"""Block inheritance on plain spec data: `block attn2 extends attn { window = 512 }`.

Runs before typing, so a JSON/YAML spec gets the same `extends` as the DSL. A bare
parameter in a block body (`window = 512`) goes to the block's mixer when the mixer
has it, else to its channel mixer; anything else is reported with a hint.
"""

from __future__ import annotations

import copy

from composer.grammar.errors import did_you_mean
from composer.problems import KeyProblem, Problem
from composer.spec import CHANNEL_KINDS, MIXER_KINDS, NORM_KINDS

PARTS = {"mixer": MIXER_KINDS, "channel": CHANNEL_KINDS, "norm": NORM_KINDS}


def _as_call(value):
    return {"kind": value} if isinstance(value, str) else value


def _merge_part(inherited, written):
    """Same kind (or no kind written): override parameters. Another kind: replace."""
    written = _as_call(written)
    inherited = _as_call(inherited)
    if isinstance(inherited, dict) and isinstance(written, dict):
        if written.get("kind", inherited.get("kind")) == inherited.get("kind"):
            return {**inherited, **written}
    return copy.deepcopy(written)


def _fields_of(part_value, kinds) -> set[str]:
    cls = kinds.get(part_value.get("kind")) if isinstance(part_value, dict) else None
    return set(cls.model_fields) - {"kind"} if cls else set()


class _Flattener:
    def __init__(self, blocks: dict):
        self.blocks = blocks
        self.done: dict[str, dict] = {}
        self.relocated: dict[tuple, tuple] = {}  # new data path -> path as written (for error spans)
        self.parents: dict[str, str] = {}
        self.problems: list[Problem] = []

    def flatten(self, name: str, visiting: tuple = ()) -> dict:
        if name in self.done:
            return self.done[name]
        written = self.blocks[name]
        if not isinstance(written, dict):
            self.problems.append(Problem(("blocks", name), f"block `{name}` must be a body of `name = value` entries"))
            self.done[name] = {}
            return {}
        result: dict = {}
        parent = written.get("extends")
        if parent is not None and not isinstance(parent, str):
            self.problems.append(Problem(("blocks", name, "extends"), "`extends` names a block, "
                                         f"not {type(parent).__name__} `{parent!r:.40}`"))
        elif parent is not None:
            if parent in visiting + (name,):
                cycle = " -> ".join(visiting + (name, parent))
                self.problems.append(Problem(("blocks", name, "extends"), f"block inheritance cycle: {cycle}"))
            elif parent not in self.blocks:
                self.problems.append(Problem(("blocks", name, "extends"), f"no block named `{parent}` to extend",
                                             hint=did_you_mean(str(parent), self.blocks)))
            else:
                result = copy.deepcopy(self.flatten(parent, visiting + (name,)))
                self.parents[name] = parent
        for key, value in written.items():
            if key == "extends":
                continue
            if key in PARTS:
                result[key] = _merge_part(result.get(key), value)
            else:
                self._place_bare(name, key, value, result)
        self.done[name] = result
        return result

    def _place_bare(self, name: str, key: str, value, result: dict) -> None:
        if _as_call(result.get("mixer")) is None or not _fields_of(_as_call(result["mixer"]), MIXER_KINDS):
            # No mixer, or one of an unknown kind: that is reported on its own; don't cascade.
            return
        for part in ("mixer", "channel"):
            if key in _fields_of(_as_call(result.get(part)), PARTS[part]):
                result[part] = {**_as_call(result[part]), key: value}
                self.relocated[("blocks", name, part, key)] = ("blocks", name, key)
                return
        known = set(PARTS) | _fields_of(_as_call(result.get("mixer")), MIXER_KINDS) \
            | _fields_of(_as_call(result.get("channel")), CHANNEL_KINDS)
        self.problems.append(KeyProblem(("blocks", name, key),
                                        f"`{key}` is neither a block part (mixer, channel, norm) nor a parameter "
                                        "of this block's mixer or channel",
                                        hint=did_you_mean(key, known)))


def flatten_blocks(blocks: dict) -> tuple[dict, dict[tuple, tuple], dict[str, str], list[Problem]]:
    """(blocks with inheritance applied, relocated paths, child -> parent, problems)."""
    flattener = _Flattener(blocks)
    flat = {name: flattener.flatten(name) for name in blocks}
    return flat, flattener.relocated, flattener.parents, flattener.problems


def drop_inherited(problems: list[Problem], parents: dict[str, str]) -> list[Problem]:
    """A problem a block inherits is reported once, at the parent that wrote it."""
    seen = {(p.path, p.message) for p in problems}

    def inherited(p: Problem) -> bool:
        if len(p.path) < 3 or p.path[0] != "blocks" or p.path[1] not in parents:
            return False
        parent_path = ("blocks", parents[p.path[1]]) + p.path[2:]
        return (parent_path, p.message) in seen
    return [p for p in problems if not inherited(p)]
