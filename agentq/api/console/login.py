"""The console's door: the login form, logging in and out (see
`agentq.api.console.session`), and its static files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from redis.exceptions import RedisError

from agentq.api.console import session
from agentq.api.console.render import HERE, templates
from agentq.api.console.session import COOKIE, csrf_ok, same_origin, viewer_of

router = APIRouter()

#: static files served, by name, with their media types
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


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
        # The address uvicorn gives: the peer's, or X-Forwarded-For's from a proxy listed
        # in FORWARDED_ALLOW_IPS (README, "Console"), so that a guesser is limited alone.
        client = request.client.host if request.client else None
        token = await run_in_threadpool(session.login, key.strip(), client)
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
