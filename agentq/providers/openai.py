"""The OpenAI chat-completions provider, and the HTTP plumbing other HTTP providers share.

Works with OpenAI itself and with every server that speaks its `/chat/completions` API
(vLLM, llama.cpp, Ollama, LiteLLM, agentq's own fake LLM). Errors are mapped to
`ProviderError` so that `call_with_retries` can tell transient failures from final ones.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from agentq.errors import ProviderError
from agentq.providers.base import ChatMessage, ChatRequest, ChatResult, Provider

#: statuses worth retrying: rate limited, server errors, gateways, Anthropic's "overloaded"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
#: how much of a provider's error body an error message may quote
BODY_SNIPPET_CHARS = 200
#: OpenAI rejects a `name` outside this pattern with a 400, so display names are cleaned
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait according to `retry-after-ms` or `Retry-After` (seconds or an
    HTTP-date); None when absent or unreadable. Never negative."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _scrub(text: str, secret: str) -> str:
    # Some providers echo the key they rejected; never let it reach a message or a log.
    return text.replace(secret, "***") if secret else text


def _snippet(text: str, secret: str) -> str:
    text = " ".join(_scrub(text, secret).split())
    if len(text) > BODY_SNIPPET_CHARS:
        text = text[: BODY_SNIPPET_CHARS - 3] + "..."
    return text


#: guards the re-setup of pools in a forked child; itself re-made in every child
_fork_lock = threading.Lock()


def _new_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_fork_lock)


class ClientPool:
    """Lends each call an `httpx.Client` of its own, keeping idle ones (and their
    keep-alive connections) for the next calls.

    Why not one shared `httpx.Client`: httpcore 1.0's sync pool rescans every queued
    request against every connection under one lock, so hundreds of threads spend seconds
    waiting on it, and it can close a connection it has just handed to a waiting thread
    (encode/httpcore#1110: "Bad file descriptor" or a hang). A client used by one thread
    at a time has neither problem. The clients share one SSL context, which is what makes
    a client cheap (~0.3 ms instead of ~40 ms).
    """

    def __init__(self, max_active: int = 2000, max_idle: int = 200) -> None:
        self.max_active = max_active
        self.max_idle = max_idle
        self._ssl: Any = None
        self._setup()

    def _setup(self) -> None:
        # In a forked child the parent's clients, sockets and (maybe held) locks are not
        # ours: start afresh without touching them. The pid goes last, so that a thread
        # that sees it never sees the parent's lock.
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_active)
        self._idle: list[httpx.Client] = []
        self._pid = os.getpid()

    @contextmanager
    def client(self, wait: float) -> Iterator[httpx.Client]:
        """A client for the duration of the block; waits up to `wait` seconds for one of
        the `max_active` slots, else raises `httpx.PoolTimeout`."""
        if self._pid != os.getpid():
            with _fork_lock:
                if self._pid != os.getpid():
                    self._setup()
        slots = self._slots
        if not slots.acquire(timeout=wait):
            raise httpx.PoolTimeout(f"all {self.max_active} connections busy")
        try:
            with self._lock:
                client = self._idle.pop() if self._idle else None  # LIFO: the warmest
            if client is None:
                client = self._new_client()
            try:
                yield client
            finally:
                self._give_back(client)
        finally:
            slots.release()

    def _new_client(self) -> httpx.Client:
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
        # A few connections so that calls to several endpoints keep theirs alive.
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        return httpx.Client(verify=self._ssl, limits=limits, follow_redirects=False)

    def _give_back(self, client: httpx.Client) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(client)
                return
        client.close()

    def close(self) -> None:
        """Close the idle clients; clients lent out are closed or kept when returned."""
        if self._pid != os.getpid():
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class HTTPProvider(Provider):
    """A provider that talks HTTP through a `ClientPool`, one per instance: at most
    `max_connections` requests in flight, `max_keepalive` idle connections kept. Safe to
    share between threads, and fork-safe (a child never uses its parent's sockets)."""

    name = "http"

    def __init__(self, *, max_connections: int = 2000, max_keepalive: int = 200) -> None:
        self.pool = ClientPool(max_connections, max_keepalive)

    def close(self) -> None:
        self.pool.close()

    # -- error mapping, shared by the subclasses ------------------------------------------

    def _transport_error(self, exc: httpx.HTTPError, request: ChatRequest) -> ProviderError:
        if isinstance(exc, httpx.PoolTimeout):
            return ProviderError(f"{self.name}: {exc} for {request.timeout:g}s", retryable=True)
        if isinstance(exc, httpx.TimeoutException):
            return ProviderError(
                f"{self.name}: no answer within {request.timeout:g}s ({type(exc).__name__})",
                retryable=True,
            )
        detail = _snippet(str(exc), request.api_key)
        return ProviderError(
            f"{self.name}: request failed ({type(exc).__name__}: {detail})", retryable=True
        )

    def _status_error(self, response: httpx.Response, request: ChatRequest) -> ProviderError:
        status = response.status_code
        retryable = status in RETRYABLE_STATUSES
        try:
            body = response.text
        except (httpx.HTTPError, UnicodeDecodeError):
            body = ""
        return ProviderError(
            f"{self.name}: HTTP {status}: {_snippet(body, request.api_key)}",
            retryable=retryable,
            status_code=status,
            retry_after=parse_retry_after(response.headers) if retryable else None,
        )

    def _invalid(self, what: str) -> ProviderError:
        # The provider answered but not in its own format: retrying will not fix that.
        return ProviderError(f"{self.name}: invalid response ({what})", retryable=False)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise self._invalid("body is not JSON") from None
        if not isinstance(data, dict):
            raise self._invalid("body is not a JSON object")
        return data


def _openai_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        name = _NAME_BAD_CHARS.sub("_", message.name)[:64]
        if name.strip("_"):
            out["name"] = name
    return out


def _usage(data: Mapping[str, Any]) -> tuple[int, int]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


class OpenAIProvider(HTTPProvider):
    """`POST {endpoint}/chat/completions`; streams server-sent events when `on_token` is
    given. `request.extra` is merged into the JSON body (e.g. `top_p`, `stop`)."""

    name = "openai"

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        url = request.endpoint.rstrip("/") + "/chat/completions"
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [_openai_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        payload.update(request.extra)
        headers = {"Content-Type": "application/json"}
        if request.api_key:
            headers["Authorization"] = f"Bearer {request.api_key}"
        start = time.monotonic()
        try:
            with self.pool.client(request.timeout) as client:
                if on_token is None:
                    response = client.post(
                        url, json=payload, headers=headers, timeout=request.timeout
                    )
                    if response.status_code != 200:
                        raise self._status_error(response, request)
                    result = self._parse(self._json(response), request)
                else:
                    payload["stream"] = True
                    # Without this OpenAI sends no usage when streaming; extra may override.
                    payload.setdefault("stream_options", {"include_usage": True})
                    with client.stream(
                        "POST", url, json=payload, headers=headers, timeout=request.timeout
                    ) as response:
                        if response.status_code != 200:
                            response.read()
                            raise self._status_error(response, request)
                        result = self._parse_stream(response, request, on_token)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, request) from exc
        return _with_latency(result, time.monotonic() - start)

    def _parse(self, data: dict[str, Any], request: ChatRequest) -> ChatResult:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._invalid("no choices[0].message.content") from None
        if not isinstance(content, str):
            raise self._invalid("choices[0].message.content is not a string")
        prompt, completion = _usage(data)
        return ChatResult(
            content=content,
            model=str(data.get("model") or request.model),
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    def _parse_stream(
        self, response: httpx.Response, request: ChatRequest, on_token: Callable[[str], None]
    ) -> ChatResult:
        parts: list[str] = []
        model = request.model
        prompt = completion = 0
        for chunk in self._events(response, request):
            model = str(chunk.get("model") or model)
            if isinstance(chunk.get("usage"), dict):
                prompt, completion = _usage(chunk)
            choices = chunk.get("choices")
            if not choices:
                continue  # e.g. the final usage-only chunk
            try:
                delta = choices[0].get("delta") or {}
                text = delta.get("content")
            except (AttributeError, IndexError, TypeError):
                raise self._invalid("stream chunk without choices[0].delta") from None
            if text:
                if not isinstance(text, str):
                    raise self._invalid("stream delta content is not a string")
                parts.append(text)
                on_token(text)
        return ChatResult(
            content="".join(parts), model=model, prompt_tokens=prompt, completion_tokens=completion
        )

    def _events(self, response: httpx.Response, request: ChatRequest) -> Iterator[dict[str, Any]]:
        """The JSON payloads of the `data:` lines, up to `[DONE]` or the end of the body."""
        saw_data = False
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, `event:` and `: keep-alive` comments
            data = line[5:].strip()
            if data == "[DONE]":
                return
            saw_data = True
            try:
                chunk = json.loads(data)
            except ValueError:
                raise self._invalid("stream chunk is not JSON") from None
            if not isinstance(chunk, dict):
                raise self._invalid("stream chunk is not a JSON object")
            if "error" in chunk:
                # Some servers report a failure mid-stream as an event, after the 200.
                raise ProviderError(
                    f"{self.name}: error in stream: "
                    f"{_snippet(json.dumps(chunk['error']), request.api_key)}",
                    retryable=True,
                )
            yield chunk
        if not saw_data:
            raise self._invalid("empty stream")


def _with_latency(result: ChatResult, latency: float) -> ChatResult:
    return replace(result, latency=latency, requests=1)
