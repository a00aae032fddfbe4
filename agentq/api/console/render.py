"""How the console's pages are rendered: the templates with their filters, a page's
common context and headers, and the answers every page may give instead (log in first,
not found, a filter refused)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2  # noqa: F401 - the templates need it: a clear ImportError without it
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from agentq.api.console import flower
from agentq.api.console.session import Viewer
from agentq.clock import utcnow

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


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


def page(
    request: Request, viewer: Viewer, name: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """The template `name` for the viewer (`?fragment=1`: the page's content only, for
    the pages that refresh themselves). Flower's links are for operators only: Flower
    shows every tenant's tasks."""
    fragment = request.query_params.get("fragment") == "1"
    return templates.TemplateResponse(
        request,
        name,
        {
            "viewer": viewer,
            "fragment": fragment,
            "flower": flower.public() if viewer.operator else "",
            **context,
        },
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def login_redirect(request: Request) -> RedirectResponse:
    """To the login form, and back here after it."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/console/login?" + urlencode({"next": target}), status_code=303)


def not_found(request: Request, viewer: Viewer, what: str) -> HTMLResponse:
    """`what` is unknown to this viewer (another tenant's answers the same)."""
    return page(request, viewer, "not_found.html", status=404, what=what)


def refused(
    request: Request,
    viewer: Viewer,
    problem: str,
    *,
    status: int = 422,
    title: str = "Not a valid filter",
) -> HTMLResponse:
    """A page that says what is wrong (a filter that names nothing: 422, by default)."""
    return page(
        request, viewer, "not_found.html", status=status, what=None, problem=problem, title=title
    )
