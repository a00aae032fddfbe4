"""The `events` table as a transactional outbox: events are stored in the transaction of
the change they tell of, published after it commits, and marked published afterwards.
Whatever a crash leaves unpublished, the reconciler publishes again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from agentq.clock import utcnow
from agentq.events import Event, event_type
from agentq.store import tables
from agentq.store.session import Tx, get_engine, transaction

E = tables.events


@dataclass(frozen=True)
class Recorded:
    """A stored event: what publishing it needs."""

    id: int
    type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime


_INSERT = insert(E).returning(E.c.id, sort_by_parameter_order=True)
_UNPUBLISHED = (
    select(E.c.id, E.c.type, E.c.conversation_id, E.c.payload, E.c.created_at)
    .where(E.c.published_at.is_(None))
    .order_by(E.c.id)
)


#: the columns of an event's row (`rows`)
ROW_COLUMNS = ("type", "conversation_id", "payload", "created_at")


def rows(batch: Sequence[Event], now: datetime) -> list[dict[str, Any]]:
    """The `events` rows of `batch` (for a statement that stores them with other writes:
    `agentq.store.writes`)."""
    return [
        {
            "type": event_type(e),
            "conversation_id": e.conversation_id,
            "payload": e.model_dump(mode="json", exclude={"conversation_id", "event_type"}),
            "created_at": now,
        }
        for e in batch
    ]


def recorded(ids: Sequence[int], values: Sequence[dict[str, Any]]) -> list[Recorded]:
    """The stored events to publish: `values` (from `rows`) with their `ids`, in order."""
    return [
        Recorded(i, v["type"], v["conversation_id"], v["payload"], v["created_at"])
        for i, v in zip(ids, values, strict=True)
    ]


def insert_events(tx: Tx, batch: Sequence[Event]) -> list[Recorded]:
    """Store `batch` in one statement, in the caller's transaction; the rows to publish
    after it commits."""
    values = rows(batch, utcnow())
    if not values:
        return []
    ids = tx.connection().execute(_INSERT, values).scalars().all()
    return recorded(ids, values)


def unpublished(older_than: datetime, limit: int) -> list[Recorded]:
    """Events stored before `older_than` and never marked published, oldest first."""
    with transaction() as tx:
        query = _UNPUBLISHED.where(E.c.created_at < older_than).limit(limit)
        return [Recorded(*row) for row in tx.connection().execute(query)]


def mark_published(ids: list[int], url: str | None = None) -> None:
    """Set `published_at` on the events `ids`.

    Not durable: a mark lost in a database crash only means the reconciler publishes the
    event again (delivery is at-least-once anyway). So on PostgreSQL the commit does not
    wait for the WAL flush, and the whole transaction is one round trip instead of four
    (a simple-query batch; the ids are integers, so inlining them is safe).
    """
    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        with transaction(url) as tx:
            tx.execute(update(E).where(E.c.id.in_(ids)).values(published_at=utcnow()))
        return
    id_list = ",".join(str(int(i)) for i in ids)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(
            "BEGIN; SET LOCAL synchronous_commit TO OFF; "
            f"UPDATE {E.name} SET published_at = now() WHERE id IN ({id_list}); COMMIT"
        )
