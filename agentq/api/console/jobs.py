"""The console's jobs: the failed list, a job (its place on its conversation's
timeline), and retrying one or every failed job."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from agentq.api.console import render, views
from agentq.api.console.access import BadFilter, acting, done, own_job, refused, scope
from agentq.api.console.paging import PAGE, Listing, listing
from agentq.api.console.session import viewer_of
from agentq.errors import AgentqError
from agentq.ops import jobs as job_ops

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/failed", response_class=HTMLResponse)
def failed_list(
    request: Request,
    tenant: str | None = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    found = listing(request, tenant, after)
    if not isinstance(found, Listing):
        return found
    rows = views.store.failed_jobs(found.tenant_id, after=found.after, limit=PAGE)
    return render.page(
        request,
        found.viewer,
        "failed.html",
        jobs=rows,
        more=found.next_page(
            rows, {"tenant": tenant}, lambda job: (job.finished_at or job.created_at, job.id)
        ),
        tenants=views.store.tenants() if found.viewer.operator else [],
        chosen={"tenant": tenant or ""},
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    """A job: its conversation's timeline, scrolled to it."""
    viewer = viewer_of(request)
    if viewer is None:
        return render.login_redirect(request)
    jid = own_job(viewer, job_id)
    found = None if jid is None else views.store.job(jid)
    if found is None:
        return render.not_found(request, viewer, "job")
    return RedirectResponse(
        f"/console/conversations/{found.conversation_id}#job-{found.id}", status_code=303
    )


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str) -> JSONResponse:
    viewer = acting(request)
    if isinstance(viewer, JSONResponse):
        return viewer
    jid = own_job(viewer, job_id)
    if jid is None:
        return JSONResponse({"error": f"job {job_id} not found"}, status_code=404)
    try:
        out = job_ops.retry_job(jid)
    except AgentqError as exc:
        return refused(exc)
    log.info("console: job %s retried by %s", jid, viewer.label)
    return done(f"job {jid} is {out.status} again", job_id=str(jid))


@router.post("/failed/retry-all")
def retry_all(request: Request, tenant: str | None = None) -> JSONResponse:
    viewer = acting(request)
    if isinstance(viewer, JSONResponse):
        return viewer
    try:
        shown = scope(viewer, tenant)
    except BadFilter as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    retried, refusals = 0, []
    for jid in views.store.failed_job_ids(shown):
        try:
            job_ops.retry_job(jid)
            retried += 1
        except AgentqError as exc:
            refusals.append(str(exc))
    log.info("console: %d failed jobs retried by %s", retried, viewer.label)
    message = f"{retried} job{'s' if retried != 1 else ''} retried"
    if refusals:
        message += f"; {len(refusals)} refused: " + "; ".join(refusals[:5])
    return done(message, retried=retried, refused=refusals)
