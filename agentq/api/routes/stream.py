"""`/v1/conversations/{id}/stream`: a conversation's events as Server-Sent Events.

The stream replays the stored feed after `Last-Event-ID` (or `?after=`) and then follows
the conversation's Redis channel live. Stored events carry their feed id as the SSE `id`,
so a client that reconnects with the standard `Last-Event-ID` header misses none of them;
live status updates are not stored and have no id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from agentq.api.auth import Caller
from agentq.api.problems import NotReady, Problem
from agentq.api.routes.conversations import MAX_CURSOR
from agentq.api.settings import api_settings
from agentq.config import get_settings
from agentq.errors import InvalidInput
from agentq.events import AGENT_TOKEN, STATUS_CATEGORIES
from agentq.ops.tenancy import own_conversation
from agentq.runtime.bus import channel, read_feed
from agentq.status import BATCH_TYPE

router = APIRouter(tags=["stream"])

#: events read from the stored feed per query while replaying
REPLAY_PAGE = 500
#: ids remembered to drop an event that arrives both by replay and live
SEEN_MAX = 10_000


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


def _resume_from(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None:
        return after
    if not last_event_id.isdigit() or int(last_event_id) > MAX_CURSOR:
        raise InvalidInput("Last-Event-ID", "must be an event id from this stream")
    return int(last_event_id)


def _sse(rec: dict[str, Any]) -> str:
    head = f"id: {rec['id']}\n" if rec.get("id") is not None else ""
    return f"{head}event: {rec['type']}\ndata: {json.dumps(rec)}\n\n"


@router.get(
    "/v1/conversations/{conversation_id}/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream."},
        404: {"model": Problem, "description": "No such conversation (or not yours)."},
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
        int | None, Query(ge=0, le=MAX_CURSOR, description="Replay stored events after this id.")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
    tokens: Annotated[
        bool,
        Query(
            description="Also stream `agent.token` records: the text of a reply as the "
            "provider writes it (live only, without an id; `offset` tells where a late "
            "subscriber joined)."
        ),
    ] = False,
) -> StreamingResponse:
    """Stream the conversation's events (`text/event-stream`)."""
    await run_in_threadpool(own_conversation, who, conversation_id)
    cats = _categories(categories)
    resume = _resume_from(last_event_id, after)
    client = aioredis.Redis.from_url(get_settings().redis_url, decode_responses=True)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        # subscribe before replaying, so that nothing falls between the two
        await pubsub.subscribe(channel(conversation_id))
    except Exception as exc:  # noqa: BLE001 - Redis down: say so instead of a broken stream
        await client.aclose()
        raise NotReady(f"live events unavailable: {type(exc).__name__}") from exc
    return StreamingResponse(
        _events(request, conversation_id, pubsub, client, cats, resume, tokens),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request,
    conversation_id: uuid.UUID,
    pubsub: Any,
    client: aioredis.Redis,
    cats: frozenset[str] | None,
    resume: int | None,
    tokens: bool,
) -> AsyncIterator[str]:
    seen: set[int] = set()
    order: deque[int] = deque()

    def first_time(event_id: int) -> bool:
        if event_id in seen:
            return False
        seen.add(event_id)
        order.append(event_id)
        if len(order) > SEEN_MAX:
            seen.discard(order.popleft())
        return True

    def wanted(rec: dict[str, Any]) -> bool:
        if cats is None or not str(rec.get("type", "")).startswith("status."):
            return True
        return rec.get("payload", {}).get("category") in cats

    heartbeat = api_settings().sse_heartbeat_seconds
    try:
        yield "retry: 1000\n: connected\n\n"
        if resume is not None:
            last = resume
            while True:
                page = await run_in_threadpool(read_feed, last, REPLAY_PAGE, conversation_id)
                for rec in page:
                    last = rec["id"]
                    if first_time(rec["id"]) and wanted(rec):
                        yield _sse(rec)
                if len(page) < REPLAY_PAGE:
                    break
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
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
            elif isinstance(data.get("id"), int) and first_time(data["id"]) and wanted(data):
                out = [_sse(data)]
            else:
                out = []
            if out:
                quiet_since = time.monotonic()
                yield "".join(out)
    finally:
        with anyio.CancelScope(shield=True):
            await pubsub.aclose()
            await client.aclose()
