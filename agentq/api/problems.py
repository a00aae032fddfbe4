"""Every error the API answers, in one JSON shape (RFC 9457 problem details), and the one
place where agentq's exceptions are mapped to HTTP statuses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentq.errors import (
    AgentqError,
    Busy,
    Conflict,
    ContentTooLong,
    InvalidInput,
    NotFound,
    Overloaded,
    ProfileConfigError,
    ProviderError,
    Timeout,
)
from agentq.ops.races import ConstraintError

log = logging.getLogger(__name__)

#: where the problem types are documented; `type` is this plus the error's code
TYPE_BASE = "https://agentq.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """The body of every error answer."""

    type: str = Field(description="The problem's kind: " + TYPE_BASE + "<code>.")
    title: str = Field(description="The HTTP status in words.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What is wrong, naming the value at fault.")
    #: the offending field (`content`, `settings.hop_limit`, `Idempotency-Key`), if any
    field: str | None = Field(
        default=None,
        description="The field at fault (`content`, `settings.hop_limit`, `agent_id`, "
        "`Content-Type`, `body` for the body as a whole), if any.",
    )


class IdempotencyKeyReused(Conflict):
    """The same Idempotency-Key was sent before with a different body."""

    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used with a different body")
        self.field = "Idempotency-Key"


class Unauthorized(AgentqError):
    code = "unauthorized"


class ReadOnlyKey(AgentqError):
    """A read-only key (AGENTQ_READ_ONLY_KEYS) asked to change something."""

    code = "read_only_key"


class TooManyAttempts(AgentqError):
    """Too many failed attempts (console logins) lately: retry after `retry_after`
    seconds; nothing was looked at."""

    code = "too_many_attempts"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PayloadTooLarge(AgentqError):
    code = "payload_too_large"


class NotReady(AgentqError):
    code = "not_ready"


#: agentq errors to HTTP statuses, most specific first
STATUSES: list[tuple[type[AgentqError], int]] = [
    (IdempotencyKeyReused, 422),
    (ContentTooLong, 422),
    (InvalidInput, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (ReadOnlyKey, 403),
    (Overloaded, 429),
    (TooManyAttempts, 429),
    (Busy, 429),
    (PayloadTooLarge, 413),
    (Timeout, 504),
    (ProviderError, 502),
    (NotReady, 503),
    # the operator's configuration, not the caller's request
    (ProfileConfigError, 503),
    (AgentqError, 400),
]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    502: "Provider error",
    503: "Not ready",
    504: "Timed out",
}


def problem(
    status: int,
    detail: str,
    *,
    code: str = "",
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_BASE + (code or str(status)),
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        field=field,
    )
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def status_of(exc: AgentqError) -> int:
    return next(status for cls, status in STATUSES if isinstance(exc, cls))


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _agentq_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentqError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, Overloaded | TooManyAttempts | Busy):
        headers = {"Retry-After": str(max(1, exc.retry_after))}
    return problem(
        status, str(exc), code=exc.code, field=getattr(exc, "field", None), headers=headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _field_of(first.get("loc", ()))
    detail = "; ".join(f"{_field_of(e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:5])
    return problem(422, detail, code="invalid_input", field=field)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


#: path parameters that are the log's context ids
_LOG_IDS = {"conversation_id": "conversation_id", "job_id": "job_id", "agent_id": "agent"}


def _ids(request: Request) -> dict[str, str]:
    params = request.path_params
    return {f: str(params[p]) for p, f in _LOG_IDS.items() if p in params}


async def _constraint(request: Request, exc: Exception) -> JSONResponse:
    # Only the exception's type is logged: its text may quote a row (a name, a body).
    log.warning(
        "concurrent write lost a race on %s %s (%s): answered 409",
        request.method,
        request.url.path,
        type(exc).__name__,
        extra=_ids(request),
    )
    return problem(
        409, "a concurrent request changed the same thing; read it again", code="conflict"
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The server logs the traceback itself (Starlette re-raises after this answer): this
    # line adds the ids. Statement parameters are hidden by the engines.
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        extra=_ids(request),
    )
    return problem(500, "internal error; see the server log", code="internal")


def install(app: FastAPI) -> None:
    """Answer every error raised under `app` as problem details."""
    app.add_exception_handler(AgentqError, _agentq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ConstraintError, _constraint)
    app.add_exception_handler(Exception, _unexpected)
