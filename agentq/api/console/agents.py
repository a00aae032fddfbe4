"""The console's agents (slots, rate, waiting work; pause and resume) and providers
(each model profile's circuit and recent outcomes)."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agentq import ids
from agentq.api.console import render, views
from agentq.api.console.access import (
    BadFilter,
    Owner,
    acting,
    done,
    refused,
    scope,
)
from agentq.api.console.session import viewer_of
from agentq.errors import AgentqError
from agentq.ops import agents as agent_ops
from agentq.ops import tenancy

log = logging.getLogger(__name__)

router = APIRouter()

#: the window of a provider's recent outcomes
PROVIDER_WINDOW = timedelta(minutes=15)


@router.get("/agents", response_class=HTMLResponse)
def agent_list(request: Request, tenant: str | None = None) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return render.login_redirect(request)
    try:
        shown = scope(viewer, tenant)
    except BadFilter as exc:
        return render.refused(request, viewer, str(exc))
    return render.page(
        request,
        viewer,
        "agents.html",
        agents=views.agent_views(views.store.agents(shown)),
        tenants=views.store.tenants() if viewer.operator else [],
        chosen={"tenant": tenant or ""},
    )


@router.post("/agents/{agent_id}/{command}")
def agent_action(request: Request, agent_id: str, command: str) -> JSONResponse:
    viewer = acting(request)
    if isinstance(viewer, JSONResponse):
        return viewer
    action = {"pause": agent_ops.pause_agent, "resume": agent_ops.resume_agent}.get(command)
    found = ids.maybe(agent_id)
    if action is None or found is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    try:
        if viewer.tenant_id is not None:
            tenancy.own_agent(Owner(viewer.tenant_id), found)
        out = action(found)
    except AgentqError as exc:
        return refused(exc)
    log.info("console: agent %s %s by %s", found, command, viewer.label)
    return done(f"{out.name} is {out.status}")


@router.get("/providers", response_class=HTMLResponse)
def provider_list(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return render.login_redirect(request)
    return render.page(
        request,
        viewer,
        "providers.html",
        providers=views.providers(PROVIDER_WINDOW, viewer.tenant_id),
        window_min=int(PROVIDER_WINDOW.total_seconds() // 60),
    )
