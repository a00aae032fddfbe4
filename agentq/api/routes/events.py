"""`/v1/events`: the stored event feed, replayable from any point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import or_, select

from agentq.api.auth import Caller
from agentq.api.models import EventPage, EventRecord
from agentq.api.routes.conversations import MAX_CURSOR, MAX_PAGE
from agentq.api.tenancy import agent_ids
from agentq.events import feed_record
from agentq.store.models import Conversation
from agentq.store.models import Event as EventRow
from agentq.store.session import reader

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=EventPage)
def read_feed(
    who: Caller,
    after: Annotated[int, Query(ge=0, le=MAX_CURSOR, description="Event id to start after.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EventPage:
    """Events of your conversations and agents with id > `after`, oldest first.

    Continue with `after=next_after`: it moves past events of other tenants too, so a
    page may hold fewer than `limit` events without being the end.
    """
    with reader() as session:
        rows = list(
            session.scalars(
                select(EventRow)
                .outerjoin(Conversation, Conversation.id == EventRow.conversation_id)
                .where(
                    EventRow.id > after,
                    or_(
                        Conversation.tenant_id == who.tenant_id, EventRow.conversation_id.is_(None)
                    ),
                )
                .order_by(EventRow.id)
                .limit(limit)
            )
        )
        mine = agent_ids(who) if any(r.conversation_id is None for r in rows) else set()
        items = [
            EventRecord.model_validate(feed_record(r))
            for r in rows
            if r.conversation_id is not None or str(r.payload.get("agent_id")) in mine
        ]
    return EventPage(items=items, next_after=rows[-1].id if rows else after)
