"""`/v1/events`: the stored event feed, replayable from any point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentq.api.auth import Caller
from agentq.api.models import EventPage, EventRecord
from agentq.api.routes.conversations import MAX_CURSOR, MAX_PAGE
from agentq.ops import tenancy

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
    records, next_after = tenancy.read_feed(who, after=after, limit=limit)
    return EventPage(items=[EventRecord.model_validate(r) for r in records], next_after=next_after)
