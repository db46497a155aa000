"""Rendered source cached on disk by content hash and imported with importlib.

The cache lives in $COMPOSER_CACHE, else ~/.cache/composer. A file's name is the
hash of its text, so identical renders share one module and a stale file cannot
be picked up for changed source.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


def cache_dir() -> Path:
    root = Path(os.environ.get("COMPOSER_CACHE", Path.home() / ".cache" / "composer"))
    return root / "modules"


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def load_source(source: str, prefix: str) -> ModuleType:
    """Write `source` to the cache (once) and import it as a module named `prefix_<hash>`."""
    name = f"{prefix}_{source_hash(source)}"
    if name in sys.modules:
        return sys.modules[name]
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(source)
        tmp.replace(path)  # atomic: parallel search workers never import a half-written file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
