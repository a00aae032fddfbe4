"""The console's pages and actions under `/console` (see `agentq.api.console`)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
import httpx
import jinja2  # noqa: F401 - the templates need it: a clear ImportError without it
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from redis.exceptions import RedisError

from agentq.api import slots
from agentq.api.aredis import async_redis
from agentq.api.console import session, views
from agentq.api.console.session import COOKIE, Viewer, csrf_ok, same_origin, viewer_of
from agentq.api.settings import api_settings
from agentq.clock import utcnow
from agentq.errors import AgentqError, Conflict, NotFound
from agentq.events import AGENT_TOKEN
from agentq.ops import agents as agent_ops
from agentq.ops import jobs as job_ops
from agentq.ops import tenancy
from agentq.runtime.bus import channel

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/console", include_in_schema=False)

#: rows a list page shows
PAGE = 50
#: static files served, by name, with their media types
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
#: the window of a provider's recent outcomes
PROVIDER_WINDOW = timedelta(minutes=15)
#: seconds the console waits for Flower's API
FLOWER_TIMEOUT = 3.0
#: the bucket of operators' live views among the tenants' (AGENTQ_API_MAX_STREAMS_PER_TENANT)
OPERATORS = uuid.UUID(int=0)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class _Owner:
    """A tenant viewer as `agentq.ops.tenancy` takes it."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id


def _fmt_time(at: datetime | None) -> str:
    """Today's times as 14:03:09, older ones with their day (UTC, as stored)."""
    if at is None:
        return ""
    if at.date() == utcnow().date():
        return at.strftime("%H:%M:%S")
    return at.strftime("%Y-%m-%d %H:%M")


def _fmt_secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


templates.env.filters["time"] = _fmt_time
templates.env.filters["secs"] = _fmt_secs


def _page(
    request: Request, viewer: Viewer, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    fragment = request.query_params.get("fragment") == "1"
    return templates.TemplateResponse(
        request,
        name,
        {
            "viewer": viewer,
            "fragment": fragment,
            "flower": flower_public(),
            **context,
        },
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/console/login?" + urlencode({"next": target}), status_code=303)


def _not_found(request: Request, viewer: Viewer, what: str) -> HTMLResponse:
    return _page(request, viewer, "not_found.html", status=404, what=what)


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


class BadFilter(Exception):
    """A filter or cursor that names nothing: 422, never "everything" instead."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def _scope(viewer: Viewer, tenant: str | None) -> uuid.UUID | None:
    """The tenant a list shows: a tenant viewer's own (whatever it asks), else the one an
    operator picked (none: every tenant; a tenant that does not exist: BadFilter)."""
    if viewer.tenant_id is not None:
        return viewer.tenant_id
    if not tenant:
        return None
    found = _uuid(tenant)
    if found is None or found not in {tid for tid, _ in views.store.tenants()}:
        raise BadFilter("tenant", "no such tenant; pick one from the list")
    return found


def _cursor(at: datetime, row_id: uuid.UUID) -> str:
    return f"{at.isoformat()}_{row_id}"


def _after(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A page's cursor: the (time, id) of the last row of the page before."""
    if not raw:
        return None
    at, _, rid = raw.rpartition("_")
    try:
        when = datetime.fromisoformat(at)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return when, uuid.UUID(rid)
    except (ValueError, OverflowError):
        raise BadFilter("after", "not a cursor of this list; start from the first page") from None


def _refuse_filter(request: Request, viewer: Viewer, exc: BadFilter) -> HTMLResponse:
    return _page(request, viewer, "not_found.html", status=422, what=None, problem=str(exc))


def _owned(
    check: Callable[[Any, uuid.UUID], uuid.UUID],
) -> Callable[[Viewer, str], uuid.UUID | None]:
    """The id a viewer may see, or None (unknown, malformed, or another tenant's: the
    decision is `agentq.ops.tenancy`'s, as for the /v1 API)."""

    def owned(viewer: Viewer, raw: str) -> uuid.UUID | None:
        found = _uuid(raw)
        if found is None or viewer.tenant_id is None:
            return found
        try:
            return check(_Owner(viewer.tenant_id), found)
        except NotFound:
            return None

    return owned


_own_conversation = _owned(tenancy.own_conversation)
_own_job = _owned(tenancy.own_job)
_own_agent = _owned(tenancy.own_agent)


# --- login ---------------------------------------------------------------------------------


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/console/conversations", status_code=303)


def _safe_next(raw: str | None) -> str:
    if raw and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console/conversations"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "error": None, "viewer": None}
    )


@router.post("/login")
async def login(request: Request) -> Response:
    """Takes {"key": ..., "next": ...} as JSON (the API takes JSON bodies only); opens a
    session (see `agentq.api.console.session`) and sets its cookie."""
    if not same_origin(request):
        return JSONResponse({"error": "cross-origin login refused"}, status_code=403)
    try:
        body = await request.json()
    except ValueError:
        body = None
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key.strip():
        return JSONResponse({"error": "enter a key"}, status_code=422)
    try:
        token = await run_in_threadpool(session.login, key.strip())
    except RedisError:
        return JSONResponse({"error": "sessions are kept in Redis, which does not answer"}, 503)
    if token is None:
        return JSONResponse({"error": "unknown or revoked key"}, status_code=401)
    target = _safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    response = JSONResponse({"next": target})
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
        max_age=session.SESSION_SECONDS,
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Ends the session (on the server: a copy of the cookie stops working too)."""
    viewer = viewer_of(request)
    if viewer is not None and (not same_origin(request) or not csrf_ok(request, viewer)):
        return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
    session.logout(request.cookies.get(COOKIE))
    response = JSONResponse({"ok": True, "next": "/console/login"})
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    media = STATIC.get(name)
    if media is None:
        return Response("not found", status_code=404)
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=media,
        headers={"Cache-Control": "max-age=300"},
    )


# --- conversations -------------------------------------------------------------------------


@router.get("/conversations", response_class=HTMLResponse)
def conversation_list(
    request: Request,
    tenant: str | None = None,
    agent: str | None = None,
    state: str | None = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return _login_redirect(request)
    try:
        tenant_id, cursor = _scope(viewer, tenant), _after(after)
        agent_id = _uuid(agent) if agent else None
        if agent and agent_id is None:
            raise BadFilter("agent", "not an agent id; pick one from the list")
        if state and state not in views.STATES:
            raise BadFilter("state", f"one of {', '.join(views.STATES)}")
    except BadFilter as exc:
        return _refuse_filter(request, viewer, exc)
    shown_state = state or None
    started = time.perf_counter()
    rows = views.store.conversations(
        tenant_id=tenant_id, agent_id=agent_id, state=shown_state, after=cursor, limit=PAGE
    )
    facts = views.Facts()
    now = utcnow()
    items = [(row, views.state_of(row, facts, now)) for row in rows]
    query = {k: v for k, v in (("tenant", tenant), ("agent", agent), ("state", shown_state)) if v}
    more = None
    if len(rows) == PAGE:
        more = "?" + urlencode({**query, "after": _cursor(rows[-1].created_at, rows[-1].id)})
    return _page(
        request,
        viewer,
        "conversations.html",
        items=items,
        more=more,
        paged=after is not None,
        first="?" + urlencode(query),
        tenants=views.store.tenants() if viewer.operator else [],
        agents=views.store.agent_names(tenant_id),
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
        return _login_redirect(request)
    cid = _own_conversation(viewer, conversation_id)
    timeline = None if cid is None else views.store.timeline(cid, before_seq=before)
    if timeline is None:
        return _not_found(request, viewer, "conversation")
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
    return _page(
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
    cid = await run_in_threadpool(_own_conversation, viewer, conversation_id)
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
    pubsub = async_redis().pubsub(ignore_subscribe_messages=True)
    recheck = api_settings().key_recheck_seconds
    checked = time.monotonic()
    quiet = time.monotonic()
    try:
        await pubsub.subscribe(channel(cid))
        yield "retry: 2000\n: connected\n\n"
        while not await request.is_disconnected():
            if time.monotonic() - checked > recheck:
                checked = time.monotonic()
                await lease.renew(3 * recheck)
                if await run_in_threadpool(viewer_of, request) is None:
                    break
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                if time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            try:
                data = json.loads(msg["data"])
            except (TypeError, ValueError):
                continue
            if data.get("type") == AGENT_TOKEN:
                yield f"event: token\ndata: {json.dumps(data.get('payload', {}))}\n\n"
            elif isinstance(data.get("id"), int):
                yield f"event: changed\ndata: {json.dumps({'type': data.get('type')})}\n\n"
            else:
                continue
            quiet = time.monotonic()
    finally:
        with anyio.CancelScope(shield=True):
            await lease.release()
            await pubsub.aclose()


# --- agents ---------------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
def agent_list(request: Request, tenant: str | None = None) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return _login_redirect(request)
    try:
        scope = _scope(viewer, tenant)
    except BadFilter as exc:
        return _refuse_filter(request, viewer, exc)
    rows = views.agent_views(views.store.agents(scope))
    return _page(
        request,
        viewer,
        "agents.html",
        agents=rows,
        tenants=views.store.tenants() if viewer.operator else [],
        chosen={"tenant": tenant or ""},
    )


def _acting(request: Request) -> tuple[Viewer | None, JSONResponse | None]:
    """The viewer of a POST, or the answer refusing it (no key, cross-origin, no CSRF
    token, read-only)."""
    viewer = viewer_of(request)
    if viewer is None:
        return None, JSONResponse({"error": "log in first"}, status_code=401)
    if not same_origin(request):
        return None, JSONResponse({"error": "cross-origin request refused"}, status_code=403)
    if not csrf_ok(request, viewer):
        return None, JSONResponse(
            {"error": "missing or wrong CSRF token: reload the page"}, status_code=403
        )
    if not viewer.can_act:
        return None, JSONResponse({"error": "this key is read-only"}, status_code=403)
    return viewer, None


def _done(message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "message": message, **extra})


def _refused(exc: AgentqError) -> JSONResponse:
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
    return JSONResponse({"error": str(exc)}, status_code=status)


@router.post("/agents/{agent_id}/{command}")
def agent_action(request: Request, agent_id: str, command: str) -> JSONResponse:
    viewer, refused = _acting(request)
    if viewer is None:
        return refused  # type: ignore[return-value]
    action = {"pause": agent_ops.pause_agent, "resume": agent_ops.resume_agent}.get(command)
    found = _uuid(agent_id)
    if action is None or found is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    try:
        if viewer.tenant_id is not None:
            tenancy.own_agent(_Owner(viewer.tenant_id), found)
        out = action(found)
    except AgentqError as exc:
        return _refused(exc)
    log.info("console: agent %s %s by %s", found, command, viewer.label)
    return _done(f"{out.name} is {out.status}")


# --- jobs -----------------------------------------------------------------------------------


@router.get("/failed", response_class=HTMLResponse)
def failed_list(
    request: Request,
    tenant: str | None = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return _login_redirect(request)
    try:
        scope, cursor = _scope(viewer, tenant), _after(after)
    except BadFilter as exc:
        return _refuse_filter(request, viewer, exc)
    rows = views.store.failed_jobs(scope, after=cursor, limit=PAGE)
    more = None
    if len(rows) == PAGE:
        last = rows[-1]
        query = {"after": _cursor(last.finished_at or last.created_at, last.id)}
        if tenant:
            query["tenant"] = tenant
        more = "?" + urlencode(query)
    return _page(
        request,
        viewer,
        "failed.html",
        jobs=rows,
        more=more,
        tenants=views.store.tenants() if viewer.operator else [],
        chosen={"tenant": tenant or ""},
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    """A job: its conversation's timeline, scrolled to it."""
    viewer = viewer_of(request)
    if viewer is None:
        return _login_redirect(request)
    jid = _own_job(viewer, job_id)
    found = None if jid is None else views.store.job(jid)
    if found is None:
        return _not_found(request, viewer, "job")
    return RedirectResponse(
        f"/console/conversations/{found.conversation_id}#job-{found.id}", status_code=303
    )


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str) -> JSONResponse:
    viewer, refused = _acting(request)
    if viewer is None:
        return refused  # type: ignore[return-value]
    jid = _own_job(viewer, job_id)
    if jid is None:
        return JSONResponse({"error": f"job {job_id} not found"}, status_code=404)
    try:
        out = job_ops.retry_job(jid)
    except AgentqError as exc:
        return _refused(exc)
    log.info("console: job %s retried by %s", jid, viewer.label)
    return _done(f"job {jid} is {out.status} again", job_id=str(jid))


@router.post("/failed/retry-all")
def retry_all(request: Request, tenant: str | None = None) -> JSONResponse:
    viewer, refused = _acting(request)
    if viewer is None:
        return refused  # type: ignore[return-value]
    try:
        scope = _scope(viewer, tenant)
    except BadFilter as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    retried, refusals = 0, []
    for jid in views.store.failed_job_ids(scope):
        try:
            job_ops.retry_job(jid)
            retried += 1
        except AgentqError as exc:
            refusals.append(str(exc))
    log.info("console: %d failed jobs retried by %s", retried, viewer.label)
    message = f"{retried} job{'s' if retried != 1 else ''} retried"
    if refusals:
        message += f"; {len(refusals)} refused: " + "; ".join(refusals[:5])
    return _done(message, retried=retried, refused=refusals)


# --- providers, search, Flower -----------------------------------------------------------


@router.get("/providers", response_class=HTMLResponse)
def provider_list(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return _login_redirect(request)
    return _page(
        request,
        viewer,
        "providers.html",
        providers=views.providers(PROVIDER_WINDOW, viewer.tenant_id),
        window_min=int(PROVIDER_WINDOW.total_seconds() // 60),
    )


def flower_public() -> str:
    """Flower's address as the console links it (without the credentials
    AGENTQ_FLOWER_URL may carry for its API)."""
    raw = api_settings().flower_url
    if not raw:
        return ""
    url = httpx.URL(raw)
    return str(url.copy_with(username=None, password=None)).rstrip("/")


async def _flower_api(path: str, **params: str) -> Any:
    """An answer of Flower's API (JSON), or None: Flower unset, away or refusing. The
    credentials of AGENTQ_FLOWER_URL (user:password@) go as basic auth. Asked without a
    server thread: a slow Flower holds no thread that other requests need."""
    raw = api_settings().flower_url
    if not raw:
        return None
    url = httpx.URL(raw)
    auth = (url.username, url.password) if url.username else None
    base = str(url.copy_with(username=None, password=None)).rstrip("/")
    try:
        async with httpx.AsyncClient(auth=auth, timeout=FLOWER_TIMEOUT) as client:
            answer = await client.get(f"{base}{path}", params=params)
    except httpx.HTTPError as exc:
        log.warning("console: Flower did not answer: %s", type(exc).__name__)
        return None
    if answer.status_code != 200:
        log.warning("console: Flower answered %d", answer.status_code)
        return None
    try:
        return answer.json()
    except ValueError:
        return None


async def _flower_args(task_id: str) -> list[str]:
    """The ids among the arguments Flower recorded for a Celery task."""
    info = await _flower_api(f"/api/task/info/{task_id}")
    return _UUID.findall(str(info.get("args", ""))) if isinstance(info, dict) else []


@router.get("/jobs/{job_id}/flower")
async def job_in_flower(request: Request, job_id: str) -> Response:
    """The job's newest Celery task in Flower (found through Flower's API: agentq's tasks
    take the job id as their argument), else Flower's task list."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return _login_redirect(request)
    jid = await run_in_threadpool(_own_job, viewer, job_id)
    public = flower_public()
    if jid is None or not public:
        return _not_found(request, viewer, "job in Flower")
    tasks = await _flower_api("/api/tasks", search=f"args:{jid}", limit="50")
    if isinstance(tasks, dict) and tasks:
        newest = max(tasks.values(), key=lambda t: t.get("received") or t.get("timestamp") or 0)
        return RedirectResponse(f"{public}/task/{newest['uuid']}", status_code=303)
    return RedirectResponse(f"{public}/tasks", status_code=303)


def _where(viewer: Viewer, raw: str) -> str | None:
    """The console page of what the id names, if the viewer may see it."""
    found = views.store.find(uuid.UUID(raw))
    if found is None:
        return None
    kind, ident = found
    own = {"job": _own_job, "conversation": _own_conversation, "agent": _own_agent}[kind]
    target = own(viewer, str(ident))
    if target is None:
        return None
    return {
        "job": f"/console/jobs/{target}",
        "conversation": f"/console/conversations/{target}",
        "agent": f"/console/agents#agent-{target}",
    }[kind]


def _first_where(viewer: Viewer, candidates: list[str], agents: bool = True) -> str | None:
    for raw in candidates:
        path = _where(viewer, raw)
        if path is not None and (agents or not path.startswith("/console/agents")):
            return path
    return None


@router.get("/find")
async def find(request: Request, q: Annotated[str, Query(max_length=2000)] = "") -> Response:
    """Go to what an id names: a job, a conversation, a message's conversation, an agent;
    or, given a Celery task id or a Flower task's arguments (agentq's tasks take ids), the
    job or conversation they name. What the viewer may not see answers as unknown."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return _login_redirect(request)
    candidates = _UUID.findall(q)[:20]
    path = await run_in_threadpool(_first_where, viewer, candidates)
    if path is None and len(candidates) == 1:  # a Celery task id: ask Flower its arguments
        args = await _flower_args(candidates[0])
        path = await run_in_threadpool(_first_where, viewer, args[:20], False)
    if path is not None:
        return RedirectResponse(path, status_code=303)
    return await run_in_threadpool(_not_found, request, viewer, "job, conversation or agent")


@router.get("/flower/task/{task_id}")
async def from_flower(request: Request, task_id: str) -> Response:
    """The console page of a Celery task as Flower names it: /console/flower/task/<id>."""
    return await find(request, q=task_id)


__all__ = ["router"]
