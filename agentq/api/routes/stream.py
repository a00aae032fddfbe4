"""`/v1/conversations/{id}/stream`: a conversation's events as Server-Sent Events.

The stream replays the stored feed after `Last-Event-ID` (or `?after=`) in commit order
and then follows the conversation's Redis channel live. Every stored event is sent with
its own feed cursor as the SSE `id`, so a client that reconnects with the standard
`Last-Event-ID` header misses and repeats no stored event: a stored event announced on
the channel is sent when the feed hands it out (read within CATCH_UP_SECONDS, once every
older transaction has ended; usually milliseconds later). Should the feed hold it back
longer than LIVE_FALLBACK_SECONDS (a long transaction elsewhere), it is sent at once
without an `id`, and a reconnect may repeat it. Live status updates and tokens are not
stored, have no id and are sent at once.
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

from agentq.api import slots, sse
from agentq.api.auth import Caller
from agentq.api.settings import api_settings
from agentq.errors import InvalidInput
from agentq.events import AGENT_TOKEN, STATUS_CATEGORIES
from agentq.ops.tenancy import own_conversation
from agentq.runtime.bus import check_cursor, feed_tail, read_feed
from agentq.status import BATCH_TYPE

router = APIRouter(tags=["stream"])

#: events read from the stored feed per query while replaying
REPLAY_PAGE = 500
#: ids remembered to drop an event that arrives both by replay and live
SEEN_MAX = 10_000
#: how soon the feed is read again while pub/sub announced events it has not handed out;
#: the wait doubles, up to CATCH_UP_MAX_SECONDS, while reads bring none of them (a long
#: transaction elsewhere on the server holds the feed back: see the RUNBOOK's feed lag)
CATCH_UP_SECONDS = 0.05
CATCH_UP_MAX_SECONDS = 1.0
#: an announced event the feed still holds back after this long is sent at once, without
#: an `id` (live beats exact resume: a reconnect soon after may repeat it)
LIVE_FALLBACK_SECONDS = 2.0
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
        #: announced, not yet handed out by the feed: id -> (when announced, the event)
        self.ahead: dict[int, tuple[float, dict[str, Any]]] = {}
        self.read_at = time.monotonic()
        self.catch_up = CATCH_UP_SECONDS
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
        """A stored event pub/sub announced: sent when the feed hands it out, with its own
        cursor (within CATCH_UP_SECONDS once every older transaction has ended), so that
        a resume from any `id` sent repeats and misses nothing."""
        if rec["id"] not in self._seen:
            self.ahead.setdefault(rec["id"], (time.monotonic(), rec))
        return []

    def due(self) -> bool:
        """Whether the feed should be read again for the events announced."""
        return bool(self.ahead) and time.monotonic() - self.read_at >= self.catch_up

    def sse(self, rec: dict[str, Any], cursor: str) -> str:
        self._sent_cursor = cursor
        return _sse(rec, cursor)

    async def read(self) -> AsyncIterator[str]:
        """The feed after the cursor, page by page: the events not sent yet, then an
        `id:`-only block if the cursor moved past events sent before."""
        self.read_at = time.monotonic()
        waiting = len(self.ahead)
        late = []
        for event_id, (since, rec) in list(self.ahead.items()):
            if self.read_at - since > LIVE_FALLBACK_SECONDS:
                del self.ahead[event_id]
                if self.first_time(event_id) and self.wanted(rec):
                    late.append(_sse(rec))
        if late:
            yield "".join(late)
        while True:
            page = await run_in_threadpool(
                read_feed, self.cursor, REPLAY_PAGE, self.conversation_id
            )
            out = []
            for rec in page:
                self.cursor = rec["cursor"]
                self.ahead.pop(rec["id"], None)
                if self.first_time(rec["id"]) and self.wanted(rec):
                    out.append(self.sse(rec, self.cursor))
            if out:
                yield "".join(out)
            if len(page) < REPLAY_PAGE:
                break
        if self._sent_cursor not in (None, self.cursor):
            self._sent_cursor = self.cursor
            yield f"id: {self.cursor}\n\n"
        handed_out = len(self.ahead) < waiting
        self.catch_up = (
            CATCH_UP_SECONDS if handed_out else min(self.catch_up * 2, CATCH_UP_MAX_SECONDS)
        )


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
    try:
        # subscribed before replaying, so that nothing falls between the two
        async with sse.listening(request, conversation_id, heartbeat) as listener:
            yield "retry: 1000\n: connected\n\n"
            if resume is None:  # live from now: the stream's place is the feed's end
                place = _Place(
                    conversation_id, await run_in_threadpool(feed_tail, conversation_id), wanted
                )
            else:
                place = _Place(conversation_id, resume, wanted)
                async for chunk in place.read():
                    yield chunk
            async for data in listener.messages(lambda: place.catch_up if place.ahead else 1.0):
                if not await guard.ok():
                    yield ": key revoked\n\n"
                    break
                if place.due():
                    async for chunk in place.read():
                        yield chunk
                if data is None:
                    if beat := listener.keep_alive():
                        yield beat
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
                    listener.sent()
                    yield "".join(out)
    finally:
        with anyio.CancelScope(shield=True):
            await guard.close()
