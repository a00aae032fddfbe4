"""Reads of the stored event feed (the `events` table), oldest first from any event id.

The SSE streams replay through `read_feed` on every (re)connect, so each read is one
Core statement built once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, or_, select

from agentq.store import tables
from agentq.store.session import reader


@dataclass(frozen=True)
class FeedEvent:
    """One stored event, as the feed hands it out."""

    id: int
    type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime


_E, _C = tables.events, tables.conversations
_COLUMNS = (_E.c.id, _E.c.type, _E.c.conversation_id, _E.c.payload, _E.c.created_at)

# Statements built once.
#: events with id > :after, oldest first, at most :limit
_FEED: Select[Any] = (
    select(*_COLUMNS)
    .where(_E.c.id > bindparam("after"))
    .order_by(_E.c.id)
    .limit(bindparam("limit"))
)
#: events of conversation :conv_id with id > :after, oldest first, at most :limit
_CONVERSATION_FEED: Select[Any] = (
    select(*_COLUMNS)
    .where(_E.c.id > bindparam("after"), _E.c.conversation_id == bindparam("conv_id"))
    .order_by(_E.c.id)
    .limit(bindparam("limit"))
)
#: events with id > :after of tenant :tenant_id's conversations or of no conversation
#: (agent events, which the caller filters by agent), oldest first, at most :limit
_TENANT_FEED: Select[Any] = (
    select(*_COLUMNS)
    .outerjoin(_C, _C.c.id == _E.c.conversation_id)
    .where(
        _E.c.id > bindparam("after"),
        or_(_C.c.tenant_id == bindparam("tenant_id"), _E.c.conversation_id.is_(None)),
    )
    .order_by(_E.c.id)
    .limit(bindparam("limit"))
)


def _events(statement: Select[Any], params: dict[str, Any]) -> list[FeedEvent]:
    with reader() as session:
        rows = session.connection().execute(statement, params).all()
    return [FeedEvent(r.id, r.type, r.conversation_id, r.payload, r.created_at) for r in rows]


def read_feed(
    after: int = 0, limit: int = 100, conversation_id: uuid.UUID | None = None
) -> list[FeedEvent]:
    """Stored events with id > `after` (of one conversation if given), oldest first."""
    if conversation_id is None:
        return _events(_FEED, {"after": after, "limit": limit})
    return _events(_CONVERSATION_FEED, {"after": after, "limit": limit, "conv_id": conversation_id})


def tenant_feed(tenant_id: uuid.UUID, after: int = 0, limit: int = 100) -> list[FeedEvent]:
    """Stored events with id > `after` of the tenant's conversations or of no conversation."""
    return _events(_TENANT_FEED, {"after": after, "limit": limit, "tenant_id": tenant_id})
