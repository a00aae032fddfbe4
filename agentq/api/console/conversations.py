"""The console's conversations: the list with where each stands, a conversation's
timeline, and its live view (SSE: tokens as they are written, and a nudge to reload the
timeline when an event is stored)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from redis.exceptions import RedisError

from agentq import ids
from agentq.api import slots, sse
from agentq.api.console import render, views
from agentq.api.console.access import BadFilter, own_conversation
from agentq.api.console.paging import PAGE, Listing, kept, listing
from agentq.api.console.session import viewer_of
from agentq.api.settings import api_settings
from agentq.clock import utcnow
from agentq.events import AGENT_TOKEN

router = APIRouter()

#: the bucket of operators' live views among the tenants' (AGENTQ_API_MAX_STREAMS_PER_TENANT)
OPERATORS = uuid.UUID(int=0)


@router.get("/conversations", response_class=HTMLResponse)
def conversation_list(
    request: Request,
    tenant: str | None = None,
    agent: str | None = None,
    state: str | None = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    agent_id = ids.maybe(agent) if agent else None

    def check() -> None:
        if agent and agent_id is None:
            raise BadFilter("agent", "not an agent id; pick one from the list")
        if state and state not in views.STATES:
            raise BadFilter("state", f"one of {', '.join(views.STATES)}")

    found = listing(request, tenant, after, check)
    if not isinstance(found, Listing):
        return found
    viewer, shown_state = found.viewer, state or None
    started = time.perf_counter()
    rows = views.store.conversations(
        tenant_id=found.tenant_id,
        agent_id=agent_id,
        state=shown_state,
        after=found.after,
        limit=PAGE,
    )
    facts = views.Facts()
    now = utcnow()
    filters = {"tenant": tenant, "agent": agent, "state": shown_state}
    return render.page(
        request,
        viewer,
        "conversations.html",
        items=[(row, views.state_of(row, facts, now)) for row in rows],
        more=found.next_page(rows, filters, lambda row: (row.created_at, row.id)),
        paged=after is not None,
        first="?" + urlencode(kept(filters)),
        tenants=views.store.tenants() if viewer.operator else [],
        agents=views.store.agent_names(found.tenant_id),
        states=views.STATES,
        chosen={"tenant": tenant or "", "agent": agent or "", "state": shown_state or ""},
        took_ms=(time.perf_counter() - started) * 1000,
    )


@router.get("/conversations/{conversation_id}", response_class=HTMLResponse)
def conversation_page(
    request: Request,
    conversation_id: str,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return render.login_redirect(request)
    cid = own_conversation(viewer, conversation_id)
    timeline = None if cid is None else views.store.timeline(cid, before_seq=before)
    if timeline is None:
        return render.not_found(request, viewer, "conversation")
    facts = views.Facts()
    state = views.state_of(timeline.conversation, facts)
    # each job after the newest message it answers
    after_seq: dict[int, list[views.TimelineJob]] = {}
    loose = []
    for tj in timeline.jobs:
        if tj.trigger_seqs:
            after_seq.setdefault(tj.trigger_seqs[-1], []).append(tj)
        else:
            loose.append(tj)
    bars = {tj.job.id: views.latency(tj) for tj in timeline.jobs}
    # one scale for every bar of the page: the longest job spans the width
    longest = max((sum(seg.seconds for seg in b) for b in bars.values()), default=0.0)
    return render.page(
        request,
        viewer,
        "conversation.html",
        t=timeline,
        conv=timeline.conversation,
        state=state,
        after_seq=after_seq,
        loose=loose,
        bars=bars,
        scale=100 / longest if longest > 0 else 0,
        why={
            tj.job.id: views.why_waiting(tj.job, facts, utcnow())[0]
            for tj in timeline.jobs
            if tj.job.status in ("waiting", "delayed")
        },
    )


@router.get("/conversations/{conversation_id}/live")
async def conversation_live(request: Request, conversation_id: str) -> Response:
    """The conversation's live events as SSE: `token` (a reply's text as it is written)
    and `changed` (a stored event: the page reloads its timeline)."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return Response("log in first", status_code=401)
    cid = await run_in_threadpool(own_conversation, viewer, conversation_id)
    if cid is None:
        return Response("not found", status_code=404)
    settings = api_settings()
    try:
        lease = await slots.acquire(
            "console-streams",
            viewer.tenant_id or OPERATORS,
            settings.max_streams_per_tenant,
            3 * settings.key_recheck_seconds,
        )
    except RedisError:
        return Response("live views need Redis, which does not answer", status_code=503)
    if not isinstance(lease, slots.Lease):
        return Response(
            f"{settings.max_streams_per_tenant} live views are open already",
            status_code=429,
            headers={"Retry-After": str(slots.retry_after(lease))},
        )
    return StreamingResponse(
        _live(request, cid, lease),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _live(request: Request, cid: uuid.UUID, lease: slots.Lease) -> AsyncIterator[str]:
    """The stream; its slot among the tenant's live views is renewed at every re-check of
    the session (a stream whose process died frees its slot when the lease runs out)."""
    settings = api_settings()
    recheck = settings.key_recheck_seconds
    checked = time.monotonic()
    try:
        async with sse.listening(request, cid, settings.sse_heartbeat_seconds) as listener:
            yield "retry: 2000\n: connected\n\n"
            async for data in listener.messages():
                if time.monotonic() - checked > recheck:
                    checked = time.monotonic()
                    await lease.renew(3 * recheck)
                    if await run_in_threadpool(viewer_of, request) is None:
                        break
                if data is None:
                    if beat := listener.keep_alive():
                        yield beat
                    continue
                if data.get("type") == AGENT_TOKEN:
                    yield f"event: token\ndata: {json.dumps(data.get('payload', {}))}\n\n"
                elif isinstance(data.get("id"), int):
                    yield f"event: changed\ndata: {json.dumps({'type': data.get('type')})}\n\n"
                else:
                    continue
                listener.sent()
    finally:
        with anyio.CancelScope(shield=True):
            await lease.release()
