"""`/v1/conversations/{id}/stream`: a conversation's events as Server-Sent Events.

The stream replays the stored feed after `Last-Event-ID` (or `?after=`) in commit order
and then follows the conversation's Redis channel live. The SSE `id` is always a feed
cursor the stream has reached in commit order, so a client that reconnects with the
standard `Last-Event-ID` header misses no stored event: a replayed event carries its own
cursor; an event delivered live (at once, before the feed may hand it out) carries the
stream's cursor, which the stream moves past it by reading the feed again within about
a second (sending an `id:`-only block), so a reconnect repeats at most the events of
that last second. Live status updates and tokens are not stored and have no id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from agentq.api import slots
from agentq.api.aredis import async_redis
from agentq.api.auth import Caller
from agentq.api.settings import api_settings
from agentq.errors import InvalidInput
from agentq.events import AGENT_TOKEN, STATUS_CATEGORIES
from agentq.ops.tenancy import own_conversation
from agentq.runtime.bus import channel, check_cursor, feed_tail, read_feed
from agentq.status import BATCH_TYPE

router = APIRouter(tags=["stream"])

#: events read from the stored feed per query while replaying
REPLAY_PAGE = 500
#: ids remembered to drop an event that arrives both by replay and live
SEEN_MAX = 10_000
#: how often the feed is read again while events delivered live are ahead of the cursor
CATCH_UP_SECONDS = 1.0
#: the longest cursor the feed hands out
MAX_CURSOR_LENGTH = 52


def _categories(raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    cats = frozenset(c.strip() for c in raw.split(",") if c.strip())
    unknown = cats - set(STATUS_CATEGORIES)
    if unknown:
        raise InvalidInput(
            "categories",
            f"unknown {', '.join(sorted(unknown))}; known: {', '.join(STATUS_CATEGORIES)}",
        )
    return cats


def _resume_from(last_event_id: str | None, after: str | None) -> str | None:
    """The feed cursor to replay after, if any (a malformed one: InvalidInput)."""
    if last_event_id is not None:
        return check_cursor(last_event_id, "Last-Event-ID")
    return None if after is None else check_cursor(after, "after")


def _sse(rec: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {rec['type']}\ndata: {json.dumps(rec)}\n\n"


class _Place:
    """Where a stream is in the stored feed (commit order), and the events it sent.

    Stored events are sent once each, whether the feed or pub/sub brings them first.
    One sent live is `ahead` of the cursor until a read of the feed passes it."""

    def __init__(self, conversation_id: uuid.UUID, cursor: str, wanted: Any) -> None:
        self.conversation_id = conversation_id
        self.cursor = cursor
        self.wanted = wanted
        self.ahead: set[int] = set()
        self.read_at = time.monotonic()
        self._sent_cursor: str | None = None
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def first_time(self, event_id: int) -> bool:
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._order.append(event_id)
        if len(self._order) > SEEN_MAX:
            self._seen.discard(self._order.popleft())
        return True

    def live(self, rec: dict[str, Any]) -> list[str]:
        """A stored event pub/sub brought: sent now (once), the feed catches up later."""
        if not self.first_time(rec["id"]):
            return []
        self.ahead.add(rec["id"])
        return [self.sse(rec, self.cursor)] if self.wanted(rec) else []

    def sse(self, rec: dict[str, Any], cursor: str) -> str:
        self._sent_cursor = cursor
        return _sse(rec, cursor)

    async def read(self) -> AsyncIterator[str]:
        """The feed after the cursor, page by page: the events not sent yet, then an
        `id:`-only block if the cursor moved past events sent before."""
        self.read_at = time.monotonic()
        while True:
            page = await run_in_threadpool(
                read_feed, self.cursor, REPLAY_PAGE, self.conversation_id
            )
            out = []
            for rec in page:
                self.cursor = rec["cursor"]
                self.ahead.discard(rec["id"])
                if self.first_time(rec["id"]) and self.wanted(rec):
                    out.append(self.sse(rec, self.cursor))
            if out:
                yield "".join(out)
            if len(page) < REPLAY_PAGE:
                break
        if self._sent_cursor not in (None, self.cursor):
            self._sent_cursor = self.cursor
            yield f"id: {self.cursor}\n\n"


@router.get(
    "/v1/conversations/{conversation_id}/stream",
    name="stream_conversation",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        429: {
            "description": "The tenant's streams are at their cap "
            "(AGENTQ_API_MAX_STREAMS_PER_TENANT); retry after `Retry-After` seconds.",
        },
        503: {"description": "Redis does not answer: no stream can be followed."},
    },
)
async def stream(
    conversation_id: uuid.UUID,
    request: Request,
    who: Caller,
    categories: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Comma-separated status categories to keep; "
            "events that are not live status always pass.",
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            description="Replay stored events after this feed cursor (`0`: from the start).",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=MAX_CURSOR_LENGTH)
    ] = None,
    tokens: Annotated[
        bool,
        Query(
            description="Also stream `agent.token` records: the text of a reply as the "
            "provider writes it (live only, without an id; `offset` tells where a late "
            "subscriber joined)."
        ),
    ] = False,
) -> Response:
    """Stream the conversation's events (`text/event-stream`). A tenant has at most
    AGENTQ_API_MAX_STREAMS_PER_TENANT streams open (429 with `Retry-After` past it); a
    stream ends within AGENTQ_API_KEY_RECHECK_SECONDS of its key's revocation."""
    await run_in_threadpool(own_conversation, who, conversation_id)
    cats = _categories(categories)
    resume = _resume_from(last_event_id, after)
    try:
        guard = await slots.open_stream(who)  # 503 without Redis
    except slots.Busy as busy:
        return busy.response()
    return StreamingResponse(
        _events(request, conversation_id, guard, cats, resume, tokens),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request,
    conversation_id: uuid.UUID,
    guard: slots.StreamGuard,
    cats: frozenset[str] | None,
    resume: str | None,
    tokens: bool,
) -> AsyncIterator[str]:
    def wanted(rec: dict[str, Any]) -> bool:
        if cats is None or not str(rec.get("type", "")).startswith("status."):
            return True
        return rec.get("payload", {}).get("category") in cats

    heartbeat = api_settings().sse_heartbeat_seconds
    # Subscribed here, not in the route: a response that never starts leaks no connection
    # of the shared pool (its slot lease just expires).
    pubsub = async_redis().pubsub(ignore_subscribe_messages=True)
    try:
        # subscribe before replaying, so that nothing falls between the two
        await pubsub.subscribe(channel(conversation_id))
        yield "retry: 1000\n: connected\n\n"
        if resume is None:  # live from now: the stream's place is the feed's end
            place = _Place(
                conversation_id, await run_in_threadpool(feed_tail, conversation_id), wanted
            )
        else:
            place = _Place(conversation_id, resume, wanted)
            async for chunk in place.read():
                yield chunk
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            if not await guard.ok():
                yield ": key revoked\n\n"
                break
            if place.ahead and time.monotonic() - place.read_at >= CATCH_UP_SECONDS:
                async for chunk in place.read():
                    yield chunk
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                if time.monotonic() - quiet_since >= heartbeat:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            try:
                data = json.loads(msg["data"])
            except (TypeError, ValueError):
                continue
            if data.get("type") == BATCH_TYPE:
                out = [_sse(item) for item in data.get("items", []) if wanted(item)]
            elif data.get("type") == AGENT_TOKEN:  # streamed text: never stored, no id
                out = [_sse(data)] if tokens else []
            elif isinstance(data.get("id"), int):
                out = place.live(data)
            else:
                out = []
            if out:
                quiet_since = time.monotonic()
                yield "".join(out)
    finally:
        with anyio.CancelScope(shield=True):
            await guard.close()
            await pubsub.aclose()
