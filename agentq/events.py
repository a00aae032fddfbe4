"""Typed events: stored in the `events` table (the replayable feed: `agentq.store.outbox`),
handed to in-process handlers, and published on Redis pub/sub per conversation after the
transaction commits (`agentq.runtime.bus`).

Payloads carry ids and short facts only, never message bodies or secrets: subscribers
fetch what they are allowed to see.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

#: streamed text of a reply being written (`job_id`, `seq`, `offset`, `text`): published
#: live in batches, never stored; the reply itself comes with `agent.responded`
AGENT_TOKEN = "agent.token"

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


class CircuitOpened(Event):
    """A model profile's circuit breaker opened (`reopened`: again, after a failed
    probe): its jobs wait `open_seconds` for a probe. An operator event, with no
    conversation: tenants' feeds leave it out (each held conversation gets a status)."""

    type = "provider.circuit_opened"
    profile: str
    open_seconds: float
    reopened: bool = False


class CircuitClosed(Event):
    """A model profile's circuit breaker closed: its provider answered the probe; the
    `woken` jobs held meanwhile start again. An operator event, like `CircuitOpened`."""

    type = "provider.circuit_closed"
    profile: str
    open_seconds: float
    woken: int


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
