"""The one clock agentq reads: timezone-aware UTC, on the database's time.

Leases, due times and retry delays are compared across hosts, so they must not depend on
each host's clock: a worker whose clock runs 10 s behind would lose a 15 s lease between
two renewals. The store measures how far the database's clock is from this host's (at
its first connection, then every `SYNC_SECONDS`) and `utcnow` adds that offset, at no
cost per call. Tests replace `utcnow` to move time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

#: how often the offset to the database's clock is measured again
SYNC_SECONDS = 60.0

_offset = timedelta(0)
_measure: Callable[[], timedelta | None] | None = None
_next_sync = 0.0
_lock = threading.Lock()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a fork while measuring must not leave the child's held


os.register_at_fork(after_in_child=_after_fork)


def utcnow() -> datetime:
    """Now, on the database's clock (this host's until the store has measured it)."""
    if _measure is not None and time.monotonic() >= _next_sync:
        _sync()
    return datetime.now(UTC) + _offset


def follow(measure: Callable[[], timedelta | None]) -> None:
    """Take the offset from `measure` (the database's clock minus this host's; None when
    it cannot be read), now and every `SYNC_SECONDS`."""
    global _measure, _next_sync
    with _lock:
        _measure, _next_sync = measure, 0.0
    _sync()


def offset() -> timedelta:
    """The offset in use: the database's clock minus this host's."""
    return _offset


def _sync() -> None:
    global _offset, _next_sync
    if not _lock.acquire(blocking=False):
        return  # another thread is measuring: use the offset we have
    try:
        if time.monotonic() < _next_sync or _measure is None:
            return
        _next_sync = time.monotonic() + SYNC_SECONDS
        measured = _measure()
        if measured is not None:
            _offset = measured
    finally:
        _lock.release()
