"""Request bodies, checked in one place before any route sees them: at most
`max_bytes` (413), JSON by Content-Type (415), valid UTF-8 JSON (422 naming the line and
column) with only finite numbers (422 naming the field, e.g. `settings.debounce_seconds`).

An answer from here is given before a route runs, so nothing is stored.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentq.api import problems

#: methods whose body is read ahead and checked
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: the one media type request bodies are in
JSON_TYPE = "application/json"


class BodyRejected(Exception):
    """A body answered 4xx before a route saw it."""

    def __init__(self, status: int, detail: str, code: str, field: str = "body") -> None:
        super().__init__(detail)
        self.status, self.detail, self.code, self.field = status, detail, code, field


class _NonFinite:
    """Where a NaN, Infinity, -Infinity (or a number too large for a float) stood."""

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def is_json(content_type: str | None) -> bool:
    """`application/json` or `application/*+json`, any parameters (charset) allowed."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith("application/") and media.endswith("+json"))


def _non_finite_path(value: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], str] | None:
    """The path of the first non-finite number in `value`, and how it was written."""
    if isinstance(value, _NonFinite):
        return path, value.text
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_path(item, (*path, str(key)))
        if found is not None:
            return found
    return None


def check_json(body: bytes) -> Any:
    """`body` parsed as strict JSON, or BodyRejected saying what is wrong and where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRejected(
            422, f"the body is not valid UTF-8 (byte {exc.start})", "invalid_json"
        ) from None
    try:
        value = json.loads(text, parse_constant=_NonFinite, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise BodyRejected(
            422,
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            "invalid_json",
        ) from None
    except RecursionError:
        raise BodyRejected(422, "the body is nested too deeply", "invalid_json") from None
    found = _non_finite_path(value)
    if found is not None:
        path, written = found
        field = ".".join(path) or "body"
        raise BodyRejected(
            422,
            f"{field}: {written} is not a number JSON allows; give a finite number",
            "invalid_input",
            field,
        )
    return value


def check(content_type: str | None, body: bytes) -> None:
    """Raise BodyRejected unless a non-empty `body` is strict JSON sent as JSON."""
    if not body:
        return  # the route says whether it needs a body
    if not is_json(content_type):
        sent = content_type or "no Content-Type"
        raise BodyRejected(
            415,
            f"request bodies must be sent as Content-Type: {JSON_TYPE} (got {sent})",
            "unsupported_media_type",
            "Content-Type",
        )
    check_json(body)


class StrictBody:
    """ASGI middleware: read a request body (up to `max_bytes`, declared or chunked),
    check it with `check`, and answer the problem itself, or hand the body on."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get(b"content-type")
        try:
            check(content_type.decode("latin-1") if content_type is not None else None, body)
        except BodyRejected as rejected:
            await self._reject(scope, receive, send, rejected)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> BodyRejected:
        return BodyRejected(
            413, f"request body is larger than {self.max_bytes} bytes", "payload_too_large"
        )

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, rejected: BodyRejected
    ) -> None:
        response = problems.problem(
            rejected.status, rejected.detail, code=rejected.code, field=rejected.field
        )
        await response(scope, receive, send)
