"""`/v1/events`: the stored event feed in commit order, replayable from any point."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agentq.api.auth import Caller
from agentq.api.models import EventPage, EventRecord
from agentq.api.routes.conversations import MAX_PAGE
from agentq.ops import tenancy

router = APIRouter(prefix="/v1/events", tags=["events"])

#: the longest cursor the feed hands out
MAX_CURSOR_LENGTH = 52


@router.get("", response_model=EventPage)
def read_feed(
    who: Caller,
    after: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            description="An opaque cursor from `next_after` or an event's `cursor`; "
            "`0` (the default) is the start.",
        ),
    ] = "0",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EventPage:
    """Events of your conversations and agents after the cursor `after`, in commit order.

    Continue with `after=next_after`: no event is ever skipped or repeated, whatever
    commits concurrently (an event shows once every transaction that began before its
    own has ended). `next_after` moves past events of other tenants too, so a page may
    hold fewer than `limit` events without being the end.
    """
    records, next_after = tenancy.read_feed(who, after=after, limit=limit)
    return EventPage(items=[EventRecord.model_validate(r) for r in records], next_after=next_after)
