"""The event bus: committed events go to this process's handlers and to Redis pub/sub (one
channel a conversation, one for all), and are marked published in the outbox afterwards.

Best effort by design: the outbox (`agentq.store.outbox`) is the truth, and the reconciler
publishes again whatever was not marked.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from agentq.config import get_settings
from agentq.events import FeedRow, _handlers, feed_record
from agentq.runtime.redis import get_redis, key
from agentq.store import feed, outbox

log = logging.getLogger(__name__)


def channel(conversation_id: uuid.UUID | str) -> str:
    """The pub/sub channel of a conversation's events and live status."""
    return key("conv", conversation_id)


def publish(rows: Iterable[FeedRow], *, mark_now: bool = False) -> None:
    """Publish committed events to Redis and mark them published.

    Best effort: if Redis is down the rows stay unpublished and the reconciler publishes
    them later; subscribers resume from the stored feed. The `published_at` marks are
    written by a background thread in batches, or before returning with `mark_now`
    (the reconciler's sweeps).
    """
    rows = list(rows)
    if not rows:
        return
    records = [feed_record(r) for r in rows]
    for rec in records:
        _dispatch_local(rec)
    try:
        pipe = get_redis().pipeline(transaction=False)
        for rec in records:
            data = json.dumps(rec)
            if rec["conversation_id"]:
                pipe.publish(channel(rec["conversation_id"]), data)
            pipe.publish(key("events"), data)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the reconciler will publish them later
        log.warning("event publish deferred: %s", type(exc).__name__)
        return
    ids = [r["id"] for r in records]
    if mark_now:
        outbox.mark_published(ids)
    else:
        _marks.add(get_settings().database_url, ids)


class _Marks:
    """Published event ids waiting for their `published_at` mark, written by one
    background thread a process, many at a time: a turn publishes several times, and a
    mark is one round trip it need not wait for. Marks still pending when the process
    dies are harmless: the reconciler publishes those events again."""

    #: how long a mark may wait for others to join it
    DELAY = 0.05

    def __init__(self) -> None:
        #: by database: ids are only unique within one
        self._ids: dict[str, list[int]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, url: str, ids: list[int]) -> None:
        with self._cond:
            self._ids.setdefault(url, []).extend(ids)
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="agentq-marks", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _take(self) -> dict[str, list[int]]:
        with self._cond:
            taken, self._ids = self._ids, {}
        return taken

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ids:
                    self._cond.wait()
            time.sleep(self.DELAY)
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - unmarked events are published again
                log.warning("events not marked published: %s", type(exc).__name__)

    def flush(self) -> None:
        """Write the pending marks now (at exit, and for tests)."""
        for url, ids in self._take().items():
            for i in range(0, len(ids), 1000):
                outbox.mark_published(ids[i : i + 1000], url)


_marks = _Marks()


@atexit.register
def _flush_at_exit() -> None:
    try:
        _marks.flush()
    except Exception:  # noqa: BLE001 - the reconciler publishes them again
        log.debug("published marks lost at exit", exc_info=True)


def flush_marks() -> None:
    """Write this process's pending `published_at` marks now."""
    _marks.flush()


#: ids of events this process handed to its handlers lately, so none is handed twice
_seen: OrderedDict[tuple[int, str], None] = OrderedDict()
_seen_lock = threading.Lock()
SEEN_MAX = 10_000


def _dispatch_local(rec: dict[str, Any]) -> None:
    if rec.get("id") is not None:
        # Ids repeat across databases; with the commit time they name one event.
        seen_key = (rec["id"], rec["created_at"])
        with _seen_lock:
            if seen_key in _seen:
                return
            _seen[seen_key] = None
            if len(_seen) > SEEN_MAX:
                _seen.popitem(last=False)
    for fn in (*_handlers.get(rec["type"], ()), *_handlers.get("*", ())):
        try:
            fn(rec)
        except Exception:  # noqa: BLE001 - one handler must not break the others
            log.exception("event handler %r failed for %s", fn, rec["type"])


class Listener:
    """A background subscription feeding this process's handlers; `stop()` ends it."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="agentq-events", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(key("events"))
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg:
                        _dispatch_local(json.loads(msg["data"]))
                pubsub.close()
            except Exception as exc:  # noqa: BLE001 - Redis restarts: subscribe again
                log.warning("event listener reconnecting: %s", type(exc).__name__)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def listen() -> Listener:
    """Hand events committed by ANY process (workers included) to this process's
    handlers, by subscribing to agentq's Redis event channel in a background thread.

    Without it, `@on` handlers see only events committed in their own process. Delivery
    is at most once per process and best effort (pub/sub); `read_feed` replays the rest.
    """
    listener = Listener()
    listener.thread.start()
    return listener


def publish_unpublished(older_than: datetime, limit: int = 1000) -> int:
    """Publish events a crash left unpublished (reconciler). Returns how many."""
    rows = outbox.unpublished(older_than, limit)
    publish(rows, mark_now=True)
    return len(rows)


def read_feed(
    after: str | int | None = None,
    limit: int = 100,
    conversation_id: uuid.UUID | None = None,
    *,
    field: str = "after",
) -> list[dict[str, Any]]:
    """The stored feed after the cursor `after` ("0" or None: from the start), in commit
    order: replayable from any point, and no event is ever skipped or repeated by a
    reader that continues from the `cursor` of the last record it got. A malformed
    cursor is an InvalidInput naming `field`.

    Only records read here carry a `cursor`: a live record's position is no place to
    resume from, as transactions that began earlier may still commit events before it.
    """
    return [
        {**feed_record(r), "cursor": r.cursor}
        for r in feed.read_feed(after, limit, conversation_id, field=field)
    ]


def feed_tail(conversation_id: uuid.UUID) -> str:
    """The cursor after the conversation's last event the feed hands out now."""
    return feed.tail(conversation_id)


def check_cursor(raw: str | int | None, field: str) -> str:
    """`raw` as a canonical feed cursor, or an InvalidInput naming `field`."""
    return feed.check_cursor(raw, field)
