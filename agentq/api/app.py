"""The FastAPI app: `/v1` routes, health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import agentq
from agentq.api import problems
from agentq.api.routes import agents, conversations, events, jobs, stream
from agentq.api.settings import api_settings
from agentq.ops.health import readiness
from agentq.runtime.metrics import render as render_metrics

#: methods whose body the size limit reads ahead
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """Answer 413 to a request body larger than `max_bytes`, declared or chunked, before
    any of it is parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
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
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(
            413,
            f"request body is larger than {self.max_bytes} bytes",
            code="payload_too_large",
            field="body",
        )
        await response(scope, receive, send)


def create_app() -> FastAPI:
    """The API app (a factory: `uvicorn --factory agentq.api:create_app`)."""
    app = FastAPI(
        title="agentq",
        version=agentq.__version__,
        description="Producer API of agentq: post messages into conversations that agents "
        "answer. Authenticate with `Authorization: Bearer <key>` (`agentq keys create`).",
    )
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=api_settings().max_body_bytes)
    for module in (agents, conversations, stream, jobs, events):
        app.include_router(module.router)

    @app.get("/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        """The process is up (it does not look at the database or Redis)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["system"], responses={503: {"model": problems.Problem}})
    async def readyz() -> dict[str, Any]:
        """The database and Redis answer; 503 naming the failing one otherwise."""
        checks = await run_in_threadpool(readiness)
        failing = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
        if failing:
            raise problems.NotReady("not ready: " + ", ".join(failing))
        return {"status": "ready", "checks": checks}

    @app.get("/metrics", tags=["system"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: this process's, and the queue's state read at scrape time."""
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return app
