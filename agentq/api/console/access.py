"""What a console viewer may see and do: the tenant a list shows, the ids a viewer may
open (the decision is `agentq.ops.tenancy`'s, as for the /v1 API), and who may act."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from agentq import ids
from agentq.api.console import views
from agentq.api.console.session import Viewer, csrf_ok, same_origin, viewer_of
from agentq.errors import AgentqError, Conflict, NotFound
from agentq.ops import tenancy

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Owner:
    """A tenant viewer as `agentq.ops.tenancy` takes it."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id


class BadFilter(Exception):
    """A filter or cursor that names nothing: 422, never "everything" instead."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def ids_in(text: str) -> list[str]:
    """The UUIDs written in `text` (a search, a Celery task's arguments), in order."""
    return _UUID.findall(text)


def scope(viewer: Viewer, tenant: str | None) -> uuid.UUID | None:
    """The tenant a list shows: a tenant viewer's own (whatever it asks), else the one an
    operator picked (none: every tenant; a tenant that does not exist: BadFilter)."""
    if viewer.tenant_id is not None:
        return viewer.tenant_id
    if not tenant:
        return None
    found = ids.maybe(tenant)
    if found is None or found not in {tid for tid, _ in views.store.tenants()}:
        raise BadFilter("tenant", "no such tenant; pick one from the list")
    return found


def _owned(
    check: Callable[[Any, uuid.UUID], uuid.UUID],
) -> Callable[[Viewer, str], uuid.UUID | None]:
    """The id a viewer may see, or None (unknown, malformed, or another tenant's)."""

    def owned(viewer: Viewer, raw: str) -> uuid.UUID | None:
        found = ids.maybe(raw)
        if found is None or viewer.tenant_id is None:
            return found
        try:
            return check(Owner(viewer.tenant_id), found)
        except NotFound:
            return None

    return owned


own_conversation = _owned(tenancy.own_conversation)
own_job = _owned(tenancy.own_job)
own_agent = _owned(tenancy.own_agent)


def acting(request: Request) -> Viewer | JSONResponse:
    """The viewer of a POST, or the answer refusing it (no session, cross-origin, no CSRF
    token, read-only)."""
    viewer = viewer_of(request)
    if viewer is None:
        return JSONResponse({"error": "log in first"}, status_code=401)
    if not same_origin(request):
        return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
    if not csrf_ok(request, viewer):
        return JSONResponse(
            {"error": "missing or wrong CSRF token: reload the page"}, status_code=403
        )
    if not viewer.can_act:
        return JSONResponse({"error": "this key is read-only"}, status_code=403)
    return viewer


def done(message: str, **extra: Any) -> JSONResponse:
    """An action's answer: what it did."""
    return JSONResponse({"ok": True, "message": message, **extra})


def refused(exc: AgentqError) -> JSONResponse:
    """An action the queue refused, with its reason (unknown 404, conflict 409, else 422)."""
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
    return JSONResponse({"error": str(exc)}, status_code=status)
