"""Going to what an id names: the search box (`/console/find?q=`), a Celery task as
Flower names it (`/console/flower/task/<id>`), and a job's newest task in Flower.

Flower holds every tenant's tasks, so only operators' sessions reach it: a tenant's
search looks up its own ids only, and a tenant gets no Flower link (`render.page`) and
a 404 for a job's Flower page, as for an unknown job.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from agentq.api.console import flower, render, views
from agentq.api.console.access import ids_in, own_agent, own_conversation, own_job
from agentq.api.console.session import Viewer, viewer_of

router = APIRouter()

#: ids of a search looked up at most
MAX_IDS = 20
#: seconds after which a "Flower busy" answer invites a retry
BUSY_RETRY_AFTER = 2


def _busy(request: Request, viewer: Viewer) -> HTMLResponse:
    answer = render.refused(
        request,
        viewer,
        f"Flower is slow to answer and {flower.SLOTS} lookups wait for it already; "
        "try again in a moment.",
        status=503,
        title="Flower busy",
    )
    answer.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
    return answer


@router.get("/jobs/{job_id}/flower")
async def job_in_flower(request: Request, job_id: str) -> Response:
    """The job's newest Celery task in Flower (found through Flower's API: agentq's tasks
    take the job id as their argument), else Flower's task list. Operators only."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return render.login_redirect(request)
    public = flower.public()
    jid = await run_in_threadpool(own_job, viewer, job_id) if viewer.operator else None
    if jid is None or not public:
        return render.not_found(request, viewer, "job in Flower")
    try:
        task = await flower.newest_task(str(jid))
    except flower.FlowerBusy:
        return _busy(request, viewer)
    return RedirectResponse(f"{public}/task/{task}" if task else f"{public}/tasks", 303)


def _where(viewer: Viewer, raw: str) -> str | None:
    """The console page of what the id names, if the viewer may see it."""
    found = views.store.find(uuid.UUID(raw))
    if found is None:
        return None
    kind, ident = found
    own = {"job": own_job, "conversation": own_conversation, "agent": own_agent}[kind]
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
    or, for an operator, given a Celery task id or a Flower task's arguments (agentq's
    tasks take ids), the job or conversation they name. What the viewer may not see
    answers as unknown."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return render.login_redirect(request)
    candidates = ids_in(q)[:MAX_IDS]
    path = await run_in_threadpool(_first_where, viewer, candidates)
    if path is None and len(candidates) == 1 and viewer.operator:
        try:  # a Celery task id: ask Flower its arguments
            args = await flower.task_args(candidates[0])
        except flower.FlowerBusy:
            return _busy(request, viewer)
        path = await run_in_threadpool(_first_where, viewer, ids_in(args)[:MAX_IDS], False)
    if path is not None:
        return RedirectResponse(path, status_code=303)
    return await run_in_threadpool(render.not_found, request, viewer, "job, conversation or agent")


@router.get("/flower/task/{task_id}")
async def from_flower(request: Request, task_id: str) -> Response:
    """The console page of a Celery task as Flower names it: /console/flower/task/<id>."""
    return await find(request, q=task_id)
