"""The FastAPI app: `/v1` routes, health, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Header, Response
from fastapi.concurrency import run_in_threadpool

import agentq
from agentq.api import openapi, problems
from agentq.api.body import StrictBody
from agentq.api.routes import agents, conversations, events, jobs, stream
from agentq.api.settings import api_settings
from agentq.logging import redact_handlers, setup_logging
from agentq.ops.health import readiness
from agentq.runtime import metrics

log = logging.getLogger(__name__)


def _include_console(app: FastAPI) -> None:
    """The operator console at /console (it needs jinja2, in the api and embedded extras)."""
    try:
        from agentq.api.console import router
    except ImportError as exc:  # pragma: no cover - an install without jinja2
        log.warning("console not served at /console: %s", exc)
        return
    app.include_router(router)


def create_app() -> FastAPI:
    """The API app (a factory: `uvicorn --factory agentq.api:create_app`)."""
    if not logging.getLogger().handlers:
        # a worker process uvicorn spawned, or uvicorn started by hand: log as agentq does
        setup_logging()
    # `uvicorn --factory agentq.api:create_app` logs through handlers of its own (the
    # access log's formatter reads the record's arguments): they mask secrets too
    redact_handlers("uvicorn", "uvicorn.error", "uvicorn.access")
    app = FastAPI(
        title="agentq",
        version=agentq.__version__,
        description="Producer API of agentq: post messages into conversations that agents "
        "answer. Authenticate with `Authorization: Bearer <key>` (`agentq keys create`). "
        "Every error is `application/problem+json` (RFC 9457) naming the field at fault.",
        generate_unique_id_function=openapi.operation_id,
    )
    problems.install(app)
    openapi.install(app)
    app.add_middleware(StrictBody, max_bytes=api_settings().max_body_bytes)
    for module in (agents, conversations, stream, jobs, events):
        app.include_router(module.router)
    _include_console(app)

    @app.get("/healthz", tags=["system"])
    def healthz() -> dict[str, str]:
        """The process is up (it does not look at the database or Redis)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["system"],
        responses={503: {"description": "The database or Redis does not answer."}},
    )
    async def readyz() -> dict[str, Any]:
        """The database and Redis answer; 503 naming the failing one otherwise."""
        checks = await run_in_threadpool(readiness)
        failing = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
        if failing:
            raise problems.NotReady("not ready: " + ", ".join(failing))
        return {"status": "ready", "checks": checks}

    settings = api_settings()
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port, settings.metrics_host, state=True)
        except OSError as exc:  # another uvicorn worker of this host serves it already
            log.warning("API metrics port %d unavailable: %s", settings.metrics_port, exc)

    @app.get(
        "/metrics",
        tags=["system"],
        name="metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}},
            401: {"description": "Wrong or missing metrics token."},
            404: {"description": "No AGENTQ_METRICS_TOKEN set."},
        },
    )
    def metrics_route(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """Prometheus metrics (this process's, and the queue's state read at scrape time),
        for `Authorization: Bearer $AGENTQ_METRICS_TOKEN` only; without a token set they
        are not served here (see AGENTQ_API_METRICS_PORT)."""
        token = settings.metrics_token
        if token is None or not token.get_secret_value():
            return problems.problem(
                404,
                "metrics are not served on the API port unless AGENTQ_METRICS_TOKEN is set; "
                "see AGENTQ_API_METRICS_PORT",
                code="not_found",
            )
        expected = f"Bearer {token.get_secret_value()}".encode()
        if not hmac.compare_digest((authorization or "").encode(), expected):
            return problems.problem(
                401,
                "metrics need Authorization: Bearer <AGENTQ_METRICS_TOKEN>",
                code="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
