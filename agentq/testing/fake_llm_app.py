"""The fake LLM's HTTP app: its knobs (`FakeLLMConfig`), its script and statistics, and the
OpenAI- and Anthropic-compatible routes. `agentq.testing.fake_llm` runs it (see there);
`agentq.testing.fake_llm_replies` writes the answers.

The script words are listed in `agentq.testing.fake_llm_config`.

A request whose client closes the connection before its answer is complete (during the
wait before it, or mid-stream) stops there: it counts in `client_disconnects` (status 499
in `by_status`), leaves `in_flight` at once, and is not `completed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from agentq.testing import fake_llm_replies as replies
from agentq.testing.fake_llm_config import (
    _HOLD,
    SCRIPT_WORDS,
    FakeLLMConfig,
    _check_script,
    _coerce_knobs,
)
from agentq.testing.fake_llm_replies import REPLY_QUOTE_CHARS, Flavour, Reply

__all__ = ["REPLY_QUOTE_CHARS", "SCRIPT_WORDS", "FakeLLMConfig", "create_app"]

#: statuses that tell the client when to come back
_RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
#: the status a request whose client went away is counted under (nginx's convention)
CLIENT_CLOSED = 499
#: what "hugetokens" reports
HUGE_TOKENS = 3_000_000_000


class _State:
    """Knobs, script and statistics of one server. Only touched from the event loop."""

    def __init__(self, config: FakeLLMConfig) -> None:
        self.initial = replace(config)
        self.reset()

    def reset(self) -> None:
        self.config = replace(self.initial)
        self.script: deque[int | str] = deque()
        self.rng = random.Random(self.config.seed)
        self.reset_stats()

    def reset_stats(self) -> None:
        # in_flight is a gauge, not a counter: requests still being answered (a hang from
        # an earlier test) will leave later, and must not drive it below zero.
        self.in_flight = getattr(self, "in_flight", 0)
        self.peak_in_flight = self.in_flight
        self.requests = 0
        self.completed = 0
        self.client_disconnects = 0
        self.by_status: dict[str, int] = {}
        self.last_request_at: float | None = None
        self.last_body: Any = None
        self.arrivals: deque[float] = deque(maxlen=10_000)
        self.disconnects_at: deque[float] = deque(maxlen=10_000)

    def arrive(self) -> None:
        now = time.time()  # wall clock, so that another process can compare
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.last_request_at = now
        self.arrivals.append(now)

    def leave(self, status: int, *, disconnected: bool = False) -> None:
        self.in_flight -= 1
        if disconnected:
            status = CLIENT_CLOSED
            self.client_disconnects += 1
            self.disconnects_at.append(time.time())
        else:
            self.completed += 1
        self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def outcome(self) -> int | str:
        """What the next request gets: the script first, then the random knobs."""
        if self.script:
            return self.script.popleft()
        c = self.config
        r = self.rng.random()
        if r < c.timeout_rate:
            return "hang"
        if r < c.timeout_rate + c.error_rate:
            return 500
        if r < c.timeout_rate + c.error_rate + c.rate_429:
            return 429
        return "ok"

    def delay(self) -> float:
        c = self.config
        return c.latency + (self.rng.uniform(0, c.jitter) if c.jitter > 0 else 0.0)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "client_disconnects": self.client_disconnects,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "by_status": dict(self.by_status),
            "last_request_at": self.last_request_at,
            "last_body": self.last_body,
            "arrivals": list(self.arrivals),
            "disconnects_at": list(self.disconnects_at),
            "script_remaining": list(self.script),
            "config": asdict(self.config),
        }


# -- request helpers ------------------------------------------------------------------------


def _key_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return request.headers.get("x-api-key", "")


async def _client_gone(request: Request) -> None:
    """Returns when the client closes the connection (its body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _hold(request: Request, seconds: float) -> bool:
    """Wait `seconds` before answering; True if the client went away meanwhile (seen at
    once: the wait races the server's disconnect message rather than polling)."""
    if seconds <= 0:
        return False
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        return bool(done)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


def _rejection(body: dict[str, Any], flavour: Flavour, c: FakeLLMConfig) -> Response | None:
    """The 400 today's APIs give to a request in yesterday's shape, if the knobs ask."""
    model = str(body.get("model") or "")
    if (
        flavour == "openai"
        and c.reject_max_tokens_for
        and "max_tokens" in body
        and re.search(c.reject_max_tokens_for, model)
    ):
        return replies.error(
            flavour,
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            code="unsupported_parameter",
            param="max_tokens",
        )
    if flavour == "anthropic" and c.reject_trailing_assistant:
        roles = [m.get("role") if isinstance(m, dict) else None for m in body["messages"]]
        if not roles or roles[0] != "user":
            return replies.error(flavour, 400, "messages: the first message must be the user's")
        if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
            return replies.error(
                flavour, 400, "messages: roles must alternate between user and assistant"
            )
        if roles[-1] == "assistant":
            return replies.error(
                flavour,
                400,
                "This model does not support assistant message prefill. "
                "The conversation must end with a user message.",
            )
    return None


def _scripted_error(flavour: Flavour, outcome: int | str, c: FakeLLMConfig) -> Response | None:
    if isinstance(outcome, int) and outcome != 200:
        headers = None
        if outcome in _RETRY_AFTER_STATUSES:
            headers = replies.retry_after_seconds(c.retry_after)
        return replies.error(flavour, outcome, f"fake error {outcome}", headers)
    match outcome:
        case "s408":
            return replies.error(flavour, 408, "fake request timeout")
        case "s409_retry":
            return replies.error(flavour, 409, "fake conflict", {"x-should-retry": "true"})
        case "s500_noretry":
            return replies.error(flavour, 500, "fake final error", {"x-should-retry": "false"})
        case "quota":
            return replies.quota_error(flavour)
        case "ra_seconds":
            return replies.error(
                flavour, 429, "slow down", replies.retry_after_seconds(c.retry_after)
            )
        case "ra_ms":
            return replies.error(flavour, 429, "slow down", replies.retry_after_ms(c.retry_after))
        case "ra_date":
            return replies.error(flavour, 429, "slow down", replies.retry_after_date(c.retry_after))
        case "nulerror":
            return replies.nul_error()
    return None


def _limit(body: dict[str, Any], c: FakeLLMConfig) -> int | None:
    keys = (body.get("max_tokens"), body.get("max_completion_tokens"), c.max_tokens)
    limits = [n for n in keys if isinstance(n, int) and not isinstance(n, bool)]
    return min(limits) if limits else None


def _reply(body: dict[str, Any], outcome: int | str, c: FakeLLMConfig) -> Reply:
    """The successful answer `outcome` calls for."""
    limit = 2 if outcome == "length" else _limit(body, c)
    content, truncated, prompt_tokens = replies.reply_text(body["messages"], limit)
    reply = Reply(
        content=content,
        model=str(body.get("model") or c.model),
        prompt_tokens=prompt_tokens,
        completion_tokens=len(content.split()),
        finish="length" if truncated or outcome == "length" else "stop",
    )
    match outcome:
        case "refusal":
            reply.refusal, reply.content = replies.REFUSAL_TEXT, ""
            reply.completion_tokens = len(replies.REFUSAL_TEXT.split())
        case "empty":
            reply.content, reply.completion_tokens = "", 0
        case "cut":
            reply.cut = True
        case "longmodel":
            reply.model = ("long-model-" * 30)[:300]
        case "nulmodel":
            reply.model = "fake\x00model"
        case "hugetokens":
            reply.prompt_tokens = reply.completion_tokens = HUGE_TOKENS
    return reply


class _CountedStream(StreamingResponse):
    """A stream that tells the statistics, when it ends, whether all of it was sent."""

    def __init__(self, state: _State, chunks: list[str], token_delay: Callable[[], float]) -> None:
        self.state = state
        self.finished = False

        async def body() -> AsyncIterator[str]:
            for i, piece in enumerate(chunks):
                if i and token_delay() > 0:
                    await asyncio.sleep(token_delay())
                yield piece
            self.finished = True

        super().__init__(body(), media_type="text/event-stream")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.state.leave(200, disconnected=not self.finished)


# -- the app --------------------------------------------------------------------------------


def create_app(config: FakeLLMConfig | None = None) -> Starlette:
    """The Starlette app of a fake LLM behaving as `config` says."""
    state = _State(config or FakeLLMConfig())

    async def chat(request: Request, flavour: Flavour) -> Response:
        state.arrive()
        status = 500
        left = False
        try:
            response = await _answer(request, flavour)
            status = response.status_code
            left = isinstance(response, _CountedStream)  # leaves when its end is sent
            return response
        finally:
            if not left:
                state.leave(status, disconnected=status == CLIENT_CLOSED)

    async def _answer(request: Request, flavour: Flavour) -> Response:
        c = state.config
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return replies.error(flavour, 400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return replies.error(flavour, 400, "messages: must be a list")
        state.last_body = body
        if c.api_key is not None and _key_of(request) != c.api_key:
            # Real providers echo (part of) the rejected key; this one echoes all of it,
            # so that tests can check clients keep it out of their errors.
            return replies.error(flavour, 401, f"Incorrect API key provided: {_key_of(request)}")
        rejected = _rejection(body, flavour, c)
        if rejected is not None:
            return rejected
        stream = bool(body.get("stream"))

        outcome = state.outcome()
        delay = state.delay()
        if outcome == "hang":
            delay += c.hang_seconds
        elif isinstance(outcome, str) and (hold := _HOLD.fullmatch(outcome)):
            delay += float(hold.group(1))
        if await _hold(request, delay):
            return Response(status_code=CLIENT_CLOSED)

        failed = _scripted_error(flavour, outcome, c)
        if failed is not None:
            return failed
        if outcome == "badjson":
            if stream:
                return _CountedStream(state, ["data: {this is not json\n\n"], lambda: 0.0)
            return Response("{this is not json", media_type="application/json")
        if outcome == "nocontent":
            return JSONResponse({"id": "x", "choices": [], "content": None})

        reply = _reply(body, outcome, c)
        if flavour == "anthropic":
            if stream:
                return _CountedStream(
                    state, replies.anthropic_sse(reply), lambda: state.config.token_delay
                )
            return replies.anthropic_json(reply)
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _CountedStream(
                state,
                replies.openai_sse(reply, include_usage),
                lambda: state.config.token_delay,
            )
        return replies.openai_json(reply)

    async def chat_completions(request: Request) -> Response:
        return await chat(request, "openai")

    async def messages(request: Request) -> Response:
        return await chat(request, "anthropic")

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": state.config.model, "object": "model"}]}
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def control(request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            script = _check_script(body.pop("script")) if "script" in body else None
            knobs = _coerce_knobs(body)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return JSONResponse({"error": str(exc)}, status_code=400)
        state.config = replace(state.config, **knobs)
        if "seed" in knobs:
            state.rng = random.Random(state.config.seed)
        if script is not None:
            state.script = deque(script)
        return JSONResponse({"config": asdict(state.config), "script": list(state.script)})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset_stats(request: Request) -> Response:
        state.reset_stats()
        return JSONResponse(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse(state.stats())

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/_control", control, methods=["POST"]),
            Route("/_stats", stats, methods=["GET"]),
            Route("/_stats/reset", reset_stats, methods=["POST"]),
            Route("/_reset", reset, methods=["POST"]),
        ]
    )
