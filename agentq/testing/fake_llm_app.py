"""The fake LLM's HTTP app: its knobs (`FakeLLMConfig`), its script and statistics, and the
OpenAI- and Anthropic-compatible routes. `agentq.testing.fake_llm` runs it (see there)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import types
import typing
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

#: the reply quotes at most this much of the user's message
REPLY_QUOTE_CHARS = 200
#: scripted outcomes besides plain HTTP statuses
SCRIPT_WORDS = frozenset({"ok", "badjson", "nocontent", "hang"})
#: statuses that tell the client when to come back
_RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
_TOKEN = re.compile(r"\S+\s*")

Flavour = Literal["openai", "anthropic"]


@dataclass
class FakeLLMConfig:
    """How the fake LLM behaves. Rates are fractions of requests in [0, 1]; their sum
    should not exceed 1 (they are checked in the order timeout, error, 429)."""

    latency: float = field(default=0.05, metadata={"help": "seconds before each answer"})
    jitter: float = field(default=0.0, metadata={"help": "extra seconds, uniform 0..jitter"})
    error_rate: float = field(default=0.0, metadata={"help": "fraction answered 500"})
    rate_429: float = field(default=0.0, metadata={"help": "fraction answered 429"})
    retry_after: float = field(default=1.0, metadata={"help": "Retry-After seconds of 429s"})
    timeout_rate: float = field(
        default=0.0, metadata={"help": "fraction that hang for hang_seconds first"}
    )
    hang_seconds: float = field(default=30.0, metadata={"help": "how long a hang lasts"})
    max_tokens: int | None = field(
        default=None, metadata={"help": "cut replies to this many words (finish: length)"}
    )
    token_delay: float = field(default=0.0, metadata={"help": "seconds between stream chunks"})
    api_key: str | None = field(
        default=None, metadata={"help": "when set, requests must carry this key"}
    )
    model: str = field(default="fake-model", metadata={"help": "model id /v1/models lists"})
    seed: int | None = field(default=None, metadata={"help": "seed of the random knobs"})


_RATES = ("error_rate", "rate_429", "timeout_rate")


def _converter(hint: Any) -> Callable[[Any], Any]:
    """The plain type of a config field (`int | None` -> int)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint  # type: ignore[no-any-return]


_FIELD_TYPES: dict[str, Callable[[Any], Any]] = {
    name: _converter(hint) for name, hint in typing.get_type_hints(FakeLLMConfig).items()
}


def _coerce_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Knob values converted to their field types; ValueError names a bad one."""
    out: dict[str, Any] = {}
    for name, value in knobs.items():
        if name not in _FIELD_TYPES:
            raise ValueError(f"unknown knob {name!r}; known: {', '.join(sorted(_FIELD_TYPES))}")
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = _FIELD_TYPES[name](value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {value!r} is not a valid value") from None
        if isinstance(out[name], float | int) and out[name] < 0:
            raise ValueError(f"{name}: must be >= 0")
        if name in _RATES and out[name] > 1:
            raise ValueError(f"{name}: must be a fraction between 0 and 1")
    return out


def _check_script(script: Any) -> list[int | str]:
    if not isinstance(script, list):
        raise ValueError("script: must be a list of statuses")
    out: list[int | str] = []
    for item in script:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        valid_status = isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599
        if not (valid_status or (isinstance(item, str) and item in SCRIPT_WORDS)):
            raise ValueError(
                f"script: {item!r} is neither an HTTP status nor one of {sorted(SCRIPT_WORDS)}"
            )
        out.append(item)
    return out


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
        self.by_status: dict[str, int] = {}
        self.last_request_at: float | None = None
        self.arrivals: deque[float] = deque(maxlen=10_000)

    def arrive(self) -> None:
        now = time.time()  # wall clock, so that another process can compare
        self.requests += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.last_request_at = now
        self.arrivals.append(now)

    def leave(self, status: int) -> None:
        self.in_flight -= 1
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
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "by_status": dict(self.by_status),
            "last_request_at": self.last_request_at,
            "arrivals": list(self.arrivals),
            "script_remaining": list(self.script),
            "config": asdict(self.config),
        }


# -- request helpers ------------------------------------------------------------------------


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _reply(messages: list[Any], limit: int | None) -> tuple[str, bool, int]:
    """(reply, truncated, prompt_tokens) for the request's messages."""
    last_user = ""
    prompt_tokens = 0
    for m in messages:
        if isinstance(m, dict):
            text = _text(m.get("content"))
            prompt_tokens += len(text.split())
            if m.get("role") == "user":
                last_user = text
    tokens = _TOKEN.findall(f"reply to: {last_user[:REPLY_QUOTE_CHARS]}")
    truncated = limit is not None and len(tokens) > limit
    if truncated:
        tokens = tokens[: max(limit or 0, 1)]
    return "".join(tokens).rstrip(), truncated, prompt_tokens


def _key_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return request.headers.get("x-api-key", "")


def _error(
    flavour: Flavour, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    body: dict[str, Any]
    if flavour == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _retry_after_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


# -- the app --------------------------------------------------------------------------------


def create_app(config: FakeLLMConfig | None = None) -> Starlette:
    """The Starlette app of a fake LLM behaving as `config` says."""
    state = _State(config or FakeLLMConfig())

    async def chat(request: Request, flavour: Flavour) -> Response:
        state.arrive()
        status = 500
        streaming = False
        try:
            response = await _answer(request, flavour)
            status = response.status_code
            streaming = isinstance(response, StreamingResponse)
            return response
        finally:
            if not streaming:  # a stream leaves when its last chunk is sent
                state.leave(status)

    async def _answer(request: Request, flavour: Flavour) -> Response:
        c = state.config
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(flavour, 400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(flavour, 400, "messages: must be a list")
        if c.api_key is not None and _key_of(request) != c.api_key:
            # Real providers echo (part of) the rejected key; this one echoes all of it,
            # so that tests can check clients keep it out of their errors.
            return _error(flavour, 401, f"Incorrect API key provided: {_key_of(request)}")
        stream = bool(body.get("stream"))
        if stream and flavour == "anthropic":
            return _error(flavour, 400, "stream: not supported by the fake Messages API")

        outcome = state.outcome()
        delay = state.delay()
        if outcome == "hang":
            delay += c.hang_seconds
            outcome = "ok"
        await asyncio.sleep(delay)

        if isinstance(outcome, int) and outcome != 200:
            headers = None
            if outcome in _RETRY_AFTER_STATUSES:
                headers = {"Retry-After": _retry_after_header(c.retry_after)}
            return _error(flavour, outcome, f"fake error {outcome}", headers)
        if outcome == "badjson":
            if stream:
                return _stream(["data: {this is not json\n\n"], "text/event-stream")
            return Response("{this is not json", media_type="application/json")
        if outcome == "nocontent":
            return JSONResponse({"id": "x", "choices": [], "content": None})

        limits = [n for n in (body.get("max_tokens"), c.max_tokens) if isinstance(n, int)]
        content, truncated, prompt_tokens = _reply(
            body["messages"], min(limits) if limits else None
        )
        model = str(body.get("model") or c.model)
        completion_tokens = len(content.split())
        if flavour == "anthropic":
            return JSONResponse(
                {
                    "id": f"msg_{uuid.uuid4().hex}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": content}],
                    "stop_reason": "max_tokens" if truncated else "end_turn",
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
                }
            )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish = "length" if truncated else "stop"
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _stream(
                _sse_chunks(model, content, finish, usage if include_usage else None),
                "text/event-stream",
            )
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            }
        )

    def _sse_chunks(
        model: str, content: str, finish: str, usage: dict[str, int] | None
    ) -> list[str]:
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None, **extra: Any) -> str:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n"

        out = [chunk({"role": "assistant", "content": ""}, None)]
        out += [chunk({"content": token}, None) for token in _TOKEN.findall(content)]
        out.append(chunk({}, finish))
        if usage is not None:
            out.append(
                "data: "
                + json.dumps(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
                + "\n\n"
            )
        out.append("data: [DONE]\n\n")
        return out

    def _stream(chunks: list[str], media_type: str) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            try:
                for i, piece in enumerate(chunks):
                    if i and state.config.token_delay > 0:
                        await asyncio.sleep(state.config.token_delay)
                    yield piece
            finally:
                state.leave(200)

        return StreamingResponse(body(), media_type=media_type)

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
