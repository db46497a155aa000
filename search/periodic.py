"""Run an action every few seconds on a daemon thread while a `with` block runs.

The study's heartbeat and the live progress display both need this; the action returns
False to stop early (a heartbeat for a trial another worker has declared lost).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def periodically(action: Callable[[], bool | None], interval_s: float, name: str) -> Iterator[None]:
    """Call `action` now and then every `interval_s` seconds until the block ends (joined on exit)."""
    stop = threading.Event()

    def loop() -> None:
        while action() is not False and not stop.wait(interval_s):
            pass

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
