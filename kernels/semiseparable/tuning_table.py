"""The measured launch choices as data: tunings.json beside this file, and the user's own entries that
`mixc tune` writes (COMPOSER_TUNINGS, default ~/.cache/<USER_FOLDER>/tunings.json), which come first.

An entry is keyed by GPU (torch's device name, or "*"), operand ("fp32", "bf16", "fp16" or "16-bit"),
head dim, state size and regime ("any", or TRAINING_BUSY: a training forward once the split form's state
passing has a program for every multiprocessor), and holds SSDTuning fields over SSDTuning()'s defaults.
A scan with no entry takes the rule tuning.py states (DEFAULT_TUNING, FP32_TUNING), never an error.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

from composer.kernels.semiseparable.tuning import SSDTuning

BUILT_IN = Path(__file__).with_name("tunings.json")
TRAINING_BUSY = "training, state passing fills"
REGIMES = ("any", TRAINING_BUSY)
_FIELDS = {f.name for f in dataclasses.fields(SSDTuning)}


USER_FOLDER = "composer"  # export: package name


def user_file() -> Path:
    return Path(os.environ.get("COMPOSER_TUNINGS", Path.home() / ".cache" / USER_FOLDER / "tunings.json"))


def tuning_from(fields: dict, where: str = "an entry") -> SSDTuning:
    """SSDTuning from an entry's fields; unknown fields are an error naming them."""
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown SSDTuning fields {sorted(unknown)}")
    backward = fields.get("backward")
    return SSDTuning(**{**fields, "backward": tuning_from(backward, where) if backward else None})


def tuning_fields(tuning: SSDTuning, base: SSDTuning = SSDTuning()) -> dict:
    """The fields of `tuning` that differ from `base`, as an entry stores them."""
    out = {}
    for f in dataclasses.fields(tuning):
        value = getattr(tuning, f.name)
        if f.name == "backward":
            if value is not None:
                out["backward"] = tuning_fields(value)
        elif value != getattr(base, f.name):
            out[f.name] = value
    return out


def read_entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())["entries"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a tunings file ({error}); fix or remove it") from None
    for entry in entries:
        tuning_from(entry["tuning"], f"{path}: {entry.get('head_dim')}x{entry.get('state')}")
    return entries


@functools.lru_cache(maxsize=None)
def _entries(user: str) -> tuple:
    return tuple(read_entries(Path(user))) + tuple(read_entries(BUILT_IN))


def _operand_matches(key: str, operand: str) -> bool:
    return key == operand or (key == "16-bit" and operand in ("bf16", "fp16"))


def lookup(gpu: str, operand: str, head_dim: int, state: int, regime: str = "any") -> SSDTuning | None:
    """The first matching entry (the user's before the built-in ones; within each, this GPU's before "*")."""
    entries = _entries(str(user_file()))
    for wanted_gpu in (gpu, "*"):
        for entry in entries:
            if (entry["gpu"] == wanted_gpu and _operand_matches(entry["operand"], operand)
                    and entry["head_dim"] == head_dim and entry["state"] == state and entry["regime"] == regime):
                return tuning_from(entry["tuning"])
    return None


def write_entries(path: Path, new: list[dict]) -> None:
    """Add `new` to the file at `path`, replacing entries with the same key."""
    def key(entry):
        return entry["gpu"], entry["operand"], entry["head_dim"], entry["state"], entry["regime"]
    kept = [e for e in read_entries(path) if key(e) not in {key(n) for n in new}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"entries": kept + new}, indent=1) + "\n")
    _entries.cache_clear()
