"""Typed events: stored in the `events` table (the replayable feed), handed to in-process
handlers, and published on Redis pub/sub per conversation after the transaction commits.

Payloads carry ids and short facts only, never message bodies or secrets: subscribers
fetch what they are allowed to see.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select, update
from sqlalchemy import insert as insert_into
from sqlalchemy.orm import Session

from agentq.config import get_settings
from agentq.store import feed, tables
from agentq.store.models import Event as EventRow
from agentq.store.models import utcnow
from agentq.store.session import transaction

log = logging.getLogger(__name__)

#: live status categories (DESIGN.md, Events)
STATUS_CATEGORIES = (
    "engine",
    "tool",
    "workflow",
    "progress",
    "error",
    "info",
    "conversation",
    "analysis",
)


class Event(BaseModel):
    """Base of every event; `type` is its one name."""

    model_config = ConfigDict(frozen=True)
    type: ClassVar[str]
    conversation_id: uuid.UUID | None = None


class MessageCreated(Event):
    type = "message.created"
    message_id: uuid.UUID
    seq: int
    role: str
    author_id: uuid.UUID | None = None


class AgentResponding(Event):
    type = "agent.responding"
    agent_id: uuid.UUID
    job_id: uuid.UUID
    attempt: int


class AgentResponded(Event):
    type = "agent.responded"
    agent_id: uuid.UUID
    job_id: uuid.UUID
    message_id: uuid.UUID
    seq: int


class JobCompleted(Event):
    type = "job.completed"
    job_id: uuid.UUID
    agent_id: uuid.UUID
    attempts: int
    duration_ms: int


class JobFailed(Event):
    type = "job.failed"
    job_id: uuid.UUID
    agent_id: uuid.UUID
    attempts: int
    reason: str


class JobRetrying(Event):
    type = "job.retrying"
    job_id: uuid.UUID
    agent_id: uuid.UUID
    attempts: int
    reason: str
    next_attempt_at: datetime


class AgentLifecycle(Event):
    """agent.created|started|stopped|paused|resumed|status_changed; `type` set per instance."""

    agent_id: uuid.UUID
    status: str
    name: str = ""
    event_type: str = "agent.status_changed"


class Status(Event):
    """Live status (`status.<category>`): typing, progress, errors, notices."""

    category: str
    message: str = ""
    data: dict[str, Any] = {}


def event_type(event: Event) -> str:
    if isinstance(event, AgentLifecycle):
        return event.event_type
    if isinstance(event, Status):
        return f"status.{event.category}"
    return event.type


Handler = Callable[[dict[str, Any]], None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def on(event_name: str) -> Callable[[Handler], Handler]:
    """Register an in-process handler: `@agentq.on("agent.responded")`.

    Handlers run in the process that committed the event, after commit, with the event's
    feed record (`id`, `type`, `conversation_id`, `payload`, `created_at`). `"*"` gets all.
    A handler that raises is logged and does not stop the others.
    """

    def register(fn: Handler) -> Handler:
        _handlers[event_name].append(fn)
        return fn

    return register


def record(session: Session, event: Event) -> EventRow:
    """Add `event` to the outbox in the caller's transaction; publish it after commit."""
    row = EventRow(
        type=event_type(event),
        conversation_id=event.conversation_id,
        payload=event.model_dump(mode="json", exclude={"conversation_id", "event_type"}),
        created_at=utcnow(),
    )
    session.add(row)
    return row


@dataclass(frozen=True)
class Recorded:
    """An event stored by `insert` (Core, the hot path): what publishing it needs."""

    id: int
    type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime


_INSERT = insert_into(tables.events).returning(tables.events.c.id, sort_by_parameter_order=True)


def insert(conn: Connection, batch: Sequence[Event]) -> list[Recorded]:
    """`record` for the hot path: store `batch` in one statement on `conn`, in the
    caller's transaction, and return the rows to publish after commit."""
    now = utcnow()
    values: list[dict[str, Any]] = [
        {
            "type": event_type(e),
            "conversation_id": e.conversation_id,
            "payload": e.model_dump(mode="json", exclude={"conversation_id", "event_type"}),
            "created_at": now,
        }
        for e in batch
    ]
    if not values:
        return []
    ids = conn.execute(_INSERT, values).scalars().all()
    return [
        Recorded(i, v["type"], v["conversation_id"], v["payload"], now)
        for i, v in zip(ids, values, strict=True)
    ]


#: what `publish` takes: rows of `record` or of `insert`
Published = EventRow | Recorded


class FeedRow(Protocol):
    """What `feed_record` reads of a stored event (an outbox row or a feed read)."""

    @property
    def id(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def conversation_id(self) -> uuid.UUID | None: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...


def feed_record(row: FeedRow) -> dict[str, Any]:
    """The feed record of a stored event: what handlers, subscribers and readers get."""
    return {
        "id": row.id,
        "type": row.type,
        "conversation_id": str(row.conversation_id) if row.conversation_id else None,
        "payload": row.payload,
        "created_at": row.created_at.isoformat(),
    }


def channel(conversation_id: uuid.UUID | str) -> str:
    from agentq.runtime.redis import key

    return key("conv", conversation_id)


def publish(rows: Iterable[Published], *, mark_now: bool = False) -> None:
    """Publish committed events to Redis and mark them published.

    Best effort: if Redis is down the rows stay unpublished and the reconciler publishes
    them later; subscribers resume from the stored feed. The `published_at` marks are
    written by a background thread in batches, or before returning with `mark_now`
    (the reconciler's sweeps).
    """
    from agentq.runtime.redis import get_redis, key

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
        mark_published(ids)
    else:
        _marks.add(get_settings().database_url, ids)


def mark_published(ids: list[int], url: str | None = None) -> None:
    """Set `published_at` on the events `ids`.

    Not durable: a mark lost in a database crash only means the reconciler publishes the
    event again (delivery is at-least-once anyway). So on PostgreSQL the commit does not
    wait for the WAL flush, and the whole transaction is one round trip instead of four
    (a simple-query batch; the ids are integers, so inlining them is safe).
    """
    from agentq.store.session import get_engine

    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        with transaction(url) as session:
            session.execute(
                update(EventRow).where(EventRow.id.in_(ids)).values(published_at=utcnow())
            )
        return
    id_list = ",".join(str(int(i)) for i in ids)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(
            "BEGIN; SET LOCAL synchronous_commit TO OFF; "
            f"UPDATE {EventRow.__tablename__} SET published_at = now() WHERE id IN ({id_list}); "
            "COMMIT"
        )


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
                mark_published(ids[i : i + 1000], url)


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
        from agentq.runtime.redis import get_redis, key

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
    with transaction() as session:
        rows = list(
            session.scalars(
                select(EventRow)
                .where(EventRow.published_at.is_(None), EventRow.created_at < older_than)
                .order_by(EventRow.id)
                .limit(limit)
            )
        )
    publish(rows, mark_now=True)
    return len(rows)


def read_feed(
    after: int = 0, limit: int = 100, conversation_id: uuid.UUID | None = None
) -> list[dict[str, Any]]:
    """The stored feed after event id `after`, oldest first: replayable from any point."""
    return [feed_record(r) for r in feed.read_feed(after, limit, conversation_id)]
