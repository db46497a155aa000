"""One lock per study that every worker process takes around the steps that read then write the queue.

Filling the queue (count the trials, add the missing ones), claiming a waiting trial and
failing a lost one each read the study and then write it; two workers doing the same step
at once would both see the same state and both act on it (two fills over-fill, two claims
run one trial twice). SQLite ignores the row lock optuna asks for when it claims, and no
storage locks a count against a concurrent add, so the worker takes this lock first:

- a SQLite file or a journal file: an exclusive `flock` on a lock file beside it, PATH.lock for
  SQLite and PATH.queue.lock for a journal, whose backend holds PATH.lock itself (any process on
  this machine, or on a file system whose locks reach every machine);
- PostgreSQL: a session advisory lock named after the study, held on one connection;
- any other URL: the storage's own row locks only (a claim is atomic, a fill from two
  processes at the same moment may over-fill).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from optuna.storages import BaseStorage, RDBStorage


def _file_lock(path: Path) -> Callable[[], ContextManager[None]]:
    in_process = threading.Lock()  # flock excludes other processes; this, other threads of this one

    @contextmanager
    def held() -> Iterator[None]:
        with in_process:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # closing releases the flock

    return held


def _postgres_lock(storage: RDBStorage, study_name: str) -> Callable[[], ContextManager[None]]:
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"composer-study:{study_name}".encode()).digest()[:8], "big", signed=True)
    in_process = threading.Lock()

    @contextmanager
    def held() -> Iterator[None]:
        with in_process, storage.engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()

    return held


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def study_lock(url: str, storage: BaseStorage, study_name: str) -> Callable[[], ContextManager[None]]:
    """A callable giving a context manager that holds the study's lock, for the storage at `url`."""
    if url.startswith("sqlite:///"):
        return _file_lock(Path(url.removeprefix("sqlite:///") + ".lock"))
    if url.startswith("journal:"):  # not PATH.lock: optuna's journal backend takes that name for its own lock
        return _file_lock(Path(url.removeprefix("journal:").removeprefix("//") + ".queue.lock"))
    if url.startswith("postgresql") and isinstance(storage, RDBStorage):
        return _postgres_lock(storage, study_name)
    return _no_lock
