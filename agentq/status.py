"""Live status: emitters for agents and tools, and the broadcaster that batches them onto
Redis pub/sub per conversation (the SSE streams subscribe there).

Live status is ephemeral: it is not stored in the event feed, and when producers outrun
Redis the oldest updates are dropped (and counted) rather than letting memory grow. The
events that matter for correctness (`message.created`, `agent.responded`, ...) go through
`agentq.events` and are stored.

    from agentq import status
    status.progress(conversation_id, "indexing", done=3, total=10)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from agentq import events
from agentq.clock import utcnow
from agentq.errors import InvalidInput
from agentq.events import STATUS_CATEGORIES, Status
from agentq.runtime import bus

log = logging.getLogger(__name__)

#: status updates published together, at most
DEFAULT_BATCH_SIZE = 50
#: seconds a status update may wait for its batch to fill: fast enough to look live
DEFAULT_FLUSH_INTERVAL = 0.1
#: updates held while Redis is slower than the producers; the oldest go first
DEFAULT_MAX_BUFFER = 1000
#: the type of the pub/sub message that carries one batch
BATCH_TYPE = "status.batch"

EMITTED = Counter("agentq_status_events_total", "Live status updates emitted.", ["category"])
DROPPED = Counter(
    "agentq_status_dropped_total",
    "Live status updates dropped: buffer full (oldest first) or Redis unavailable.",
)
BATCHES = Counter("agentq_status_batches_total", "Live status batches published to Redis.")
BUFFERED = Gauge("agentq_status_buffer_size", "Live status updates waiting to be published.")


def status_record(event: Status) -> dict[str, Any]:
    """A status update in the shape of an event-feed record; `id` is None: not stored."""
    if event.category not in STATUS_CATEGORIES:
        raise InvalidInput(
            "category", f"{event.category!r} is not one of {', '.join(STATUS_CATEGORIES)}"
        )
    return {
        "id": None,
        "type": events.event_type(event),
        "conversation_id": str(event.conversation_id) if event.conversation_id else None,
        "payload": {"category": event.category, "message": event.message, "data": event.data},
        "created_at": utcnow().isoformat(),
    }


@dataclass
class BroadcastStats:
    emitted: int = 0
    dropped: int = 0
    batches: int = 0
    published: int = 0


class StatusBroadcaster:
    """Batches status updates and publishes them per conversation and category.

    `emit` never blocks on Redis: it appends to a bounded buffer (`max_buffer`, oldest
    dropped first) that a background thread drains every `flush_interval` seconds, or as
    soon as `batch_size` updates wait. Each batch is split by (conversation, category)
    into one pub/sub message each on `agentq.bus.channel(conversation_id)`.
    """

    def __init__(
        self,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        if batch_size < 1 or max_buffer < batch_size or flush_interval <= 0:
            raise ValueError("need batch_size >= 1, max_buffer >= batch_size, flush_interval > 0")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.stats = BroadcastStats()
        self._buffer: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._buffer)

    def emit(self, event: Status) -> None:
        """Queue `event` for publishing and hand it to in-process handlers. Non-blocking."""
        if event.conversation_id is None:
            raise InvalidInput("conversation_id", "live status belongs to a conversation")
        rec = status_record(event)
        bus._dispatch_local(rec)
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self._buffer.popleft()
                self.stats.dropped += 1
                DROPPED.inc()
            self._buffer.append(rec)
            self.stats.emitted += 1
            waiting = len(self._buffer)
        EMITTED.labels(event.category).inc()
        BUFFERED.set(waiting)
        if waiting >= self.batch_size:
            self._wake.set()

    def flush(self) -> int:
        """Publish one batch (up to `batch_size` updates) now; returns how many it held."""
        with self._lock:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            BUFFERED.set(len(self._buffer))
        if not batch:
            return 0
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for rec in batch:
            groups[(rec["conversation_id"], rec["payload"]["category"])].append(rec)
        try:
            from agentq.runtime.redis import get_redis

            pipe = get_redis().pipeline(transaction=False)
            for (conv_id, category), items in groups.items():
                message = {
                    "type": BATCH_TYPE,
                    "conversation_id": conv_id,
                    "category": category,
                    "items": items,
                }
                pipe.publish(bus.channel(conv_id), json.dumps(message))
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - live status is best effort, never stored
            log.warning("status batch dropped (%d updates): %s", len(batch), type(exc).__name__)
            self.stats.dropped += len(batch)
            DROPPED.inc(len(batch))
            return len(batch)
        self.stats.batches += 1
        self.stats.published += len(groups)
        BATCHES.inc()
        return len(batch)

    def drain(self) -> None:
        """Publish everything buffered now (blocking)."""
        while self.flush():
            pass

    def start(self) -> StatusBroadcaster:
        """Start the background publisher thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="agentq-status", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread after publishing what is buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.drain()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            # a full batch goes at once; keep going while producers keep up the pace
            while self.flush() == self.batch_size and not self._stop.is_set():
                pass


_default: tuple[int, StatusBroadcaster] | None = None
_default_lock = threading.Lock()


def get_broadcaster() -> StatusBroadcaster:
    """This process's broadcaster, started on first use (and anew after a fork)."""
    global _default
    current = _default
    if current is None or current[0] != os.getpid():
        with _default_lock:
            current = _default
            if current is None or current[0] != os.getpid():
                current = _default = (os.getpid(), StatusBroadcaster().start())
                atexit.register(current[1].stop)
    return current[1]


def emit(conversation_id: uuid.UUID | str, category: str, message: str = "", **data: Any) -> None:
    """Emit a live status update of `category` (one of STATUS_CATEGORIES) for a
    conversation; `data` must be JSON-serialisable. Non-blocking, best effort."""
    get_broadcaster().emit(
        Status(
            conversation_id=uuid.UUID(str(conversation_id)),
            category=category,
            message=message,
            data=data,
        )
    )


def engine(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """The LLM engine's state: model chosen, tokens streamed, retries."""
    emit(conversation_id, "engine", message, **data)


def tool(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """A tool call started, progressed or returned."""
    emit(conversation_id, "tool", message, **data)


def workflow(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """A step of a multi-step workflow."""
    emit(conversation_id, "workflow", message, **data)


def progress(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """How far a long task is (e.g. `done=3, total=10`)."""
    emit(conversation_id, "progress", message, **data)


def error(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """Something went wrong that the user should see live (failures are also stored)."""
    emit(conversation_id, "error", message, **data)


def info(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """A notice."""
    emit(conversation_id, "info", message, **data)


def conversation(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """Something about the conversation itself: a participant joined, a topic changed."""
    emit(conversation_id, "conversation", message, **data)


def analysis(conversation_id: uuid.UUID | str, message: str = "", **data: Any) -> None:
    """Results of analysing the conversation: sentiment, intent, summaries."""
    emit(conversation_id, "analysis", message, **data)
