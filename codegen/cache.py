"""Rendered source cached on disk by content hash, executed from the text this process rendered.

The cache lives in $COMPOSER_CACHE, else ~/.cache/composer. A file's name is the hash of
its text, so identical renders share one module and a stale file cannot be picked up for
changed source. Nothing on disk is trusted to be code:

- the module runs from the source this process rendered (compile() of that text, exec into
  a fresh module), never from the file, so no `__pycache__` bytecode is read or written and a
  file swapped after it was checked is never run; the file is there for people to read, and
  linecache is given the same text so tracebacks and Triton's source reads see what runs;
- folders are created private (0700), files private (0600); the cache root and its `modules`
  folder must be this user's and writable by nobody else, else CacheError;
- a file is written through a fresh temporary file (O_EXCL with a random name, not following
  symlinks) moved into place, so a planted symlink is replaced rather than written through.
"""

from __future__ import annotations

import hashlib
import linecache
import os
import stat
import sys
import tempfile
from pathlib import Path
from types import ModuleType


class CacheError(Exception):
    """The module cache folder is not safe to use; the message says which folder and why."""


def cache_root() -> Path:
    return Path(os.environ.get("COMPOSER_CACHE", Path.home() / ".cache" / "composer"))


def cache_dir() -> Path:
    return cache_root() / "modules"


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def _private_folder(folder: Path, tighten: bool = False) -> None:
    """Create `folder` 0700 if missing; refuse one that is a symlink, not ours, or writable by others;
    with `tighten`, make one of ours that others may read private."""
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"module cache {folder} is not a plain folder (a symlink or a file): remove it, or set "
                         "COMPOSER_CACHE to a folder of your own")
    if info.st_uid != os.geteuid():
        raise CacheError(f"module cache {folder} belongs to another user (uid {info.st_uid}): set COMPOSER_CACHE "
                         "to a folder of your own")
    if info.st_mode & 0o022:
        raise CacheError(f"module cache {folder} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}):"
                         f" run `chmod go-w {folder}`, or set COMPOSER_CACHE to a private folder")
    if tighten and info.st_mode & 0o077:
        os.chmod(folder, 0o700)


def _holds(path: Path, source: str) -> bool:
    """Whether `path` is a regular file of ours, private, holding exactly `source` (symlinks not followed)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            return False
        return file.read(len(source.encode()) + 1) == source.encode()


def _write(directory: Path, path: Path, source: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.stem}.", suffix=".tmp")  # O_EXCL, 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(source.encode())
        os.replace(temporary, path)  # atomic: parallel search workers never see a half-written file
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_source(source: str, prefix: str) -> ModuleType:
    """Keep `source` in the cache (once) and run it as a module named `prefix_<hash>`."""
    name = f"{prefix}_{source_hash(source)}"
    if name in sys.modules:
        return sys.modules[name]
    root, directory = cache_root(), cache_dir()
    _private_folder(root)
    _private_folder(directory, tighten=True)
    path = directory / f"{name}.py"
    if not _holds(path, source):
        _write(directory, path, source)
    code = compile(source, str(path), "exec", dont_inherit=True)
    linecache.cache[str(path)] = (len(source), None, source.splitlines(keepends=True), str(path))
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module
