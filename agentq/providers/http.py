"""The HTTP plumbing the OpenAI and Anthropic providers share: connection pools (blocking
and async), the request/stream loop, server-sent events, and the mapping of HTTP failures
to `ProviderError` with today's retry rules.

Retry rules (`status_error`): 408, 409, 429, 500, 502, 503, 504 and 529 are retryable,
as are timeouts and connection errors; a `x-should-retry: true|false` header overrides the
status either way; a 429 whose body says `insufficient_quota` is never retryable (the
quota does not come back by waiting). Every retryable error carries the wait the provider
asked for (`retry-after-ms`, `Retry-After` in seconds or as an HTTP date) as
`ProviderError.retry_after`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from agentq.errors import ProviderError
from agentq.providers.base import ChatRequest, ChatResult, Provider
from agentq.providers.clean import clean_line, snippet
from agentq.providers.pools import AsyncClientPool, ClientPool

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore runs `import sniffio` on every async request; a module that is not there is
    # looked for on the whole sys.path each time (2,000 calls: over 2 s of CPU). Remember
    # the miss: the import then fails at once, and httpcore assumes asyncio, as it would.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

#: statuses worth retrying: timeout, conflict (OpenAI's "retry me"), rate limited, server
#: errors, gateways, Anthropic's "overloaded"
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
#: provider error codes that no wait cures, whatever the status says
NEVER_RETRY_CODES = frozenset({"insufficient_quota"})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait according to `retry-after-ms` or `Retry-After` (seconds or an
    HTTP-date); None when absent or unreadable. Never negative."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if value == value:  # not NaN
                return max(0.0, value)
        except ValueError:
            pass
    text = (headers.get("retry-after") or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_codes(body: str) -> list[str]:
    """The provider's own error words in a JSON error body, telling first: OpenAI's
    `error.code` then `error.type` (e.g. "insufficient_quota"), Anthropic's `error.type`."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    error = data.get("error") if isinstance(data, dict) else None
    return _words(error)


def _words(error: Any) -> list[str]:
    if not isinstance(error, dict):
        return []
    words = [error.get("code"), error.get("type")]
    return [clean_line(w, 64) for w in words if isinstance(w, str) and w.strip()]


class StreamParser:
    """Reads one provider's stream chunks into a `ChatResult`, passing text deltas to
    `on_token` as they come. Subclasses implement `feed` and `result`."""

    def __init__(self, provider: HTTPProvider, request: ChatRequest) -> None:
        self.provider = provider
        self.request = request
        #: the provider said the stream is complete ([DONE], message_stop)
        self.done = False
        #: any `data:` line came
        self.seen = False

    def feed(self, chunk: dict[str, Any]) -> None:
        raise NotImplementedError

    def result(self) -> ChatResult:
        raise NotImplementedError


class HTTPProvider(Provider):
    """A provider that talks HTTP: blocking calls through a `ClientPool`, async calls
    through an `AsyncClientPool`. At most `max_connections` requests in flight per pool
    (per event loop for async calls), about `max_keepalive` idle clients kept. Safe to share between threads
    and fork-safe. Subclasses implement `build`, `parse` and `stream_parser`."""

    name = "http"

    def __init__(self, *, max_connections: int = 2000, max_keepalive: int = 200) -> None:
        self.pool = ClientPool(max_connections, max_keepalive)
        self.apool = AsyncClientPool(max_connections, max_keepalive, self.pool.ssl_context)

    def close(self) -> None:
        self.pool.close()
        self.apool.forget()

    async def aclose(self) -> None:
        await self.apool.aclose()
        self.pool.close()

    # -- what subclasses say ---------------------------------------------------------------

    def build(
        self, request: ChatRequest, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(url, headers, JSON body) of the request."""
        raise NotImplementedError

    def parse(self, data: dict[str, Any], request: ChatRequest) -> ChatResult:
        """The result of a JSON (non-streamed) answer."""
        raise NotImplementedError

    def stream_parser(self, request: ChatRequest, on_token: Callable[[str], None]) -> StreamParser:
        raise NotImplementedError

    # -- one request -----------------------------------------------------------------------

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        url, headers, payload = self.build(request, on_token is not None)
        start = time.monotonic()
        try:
            with self.pool.client(request.timeout) as client:
                if on_token is None:
                    response = client.post(
                        url, json=payload, headers=headers, timeout=request.timeout
                    )
                    result = self._answer(response, request)
                else:
                    with client.stream(
                        "POST", url, json=payload, headers=headers, timeout=request.timeout
                    ) as response:
                        if response.status_code != 200 or not _is_event_stream(response):
                            response.read()
                            result = self._unstreamed(response, request, on_token)
                        else:
                            parser = self.stream_parser(request, on_token)
                            for line in response.iter_lines():
                                self._feed(parser, line)
                                if parser.done:
                                    break
                            result = self._finish(parser)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, request) from exc
        return replace(result, latency=time.monotonic() - start, requests=1)

    async def acomplete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        """As `complete`, on the running loop. Cancelling the task closes the request's
        connection at once (httpx closes a connection whose response was not read)."""
        url, headers, payload = self.build(request, on_token is not None)
        start = time.monotonic()
        try:
            async with self.apool.client(request.timeout) as client:
                if on_token is None:
                    response = await client.post(
                        url, json=payload, headers=headers, timeout=request.timeout
                    )
                    result = self._answer(response, request)
                else:
                    async with client.stream(
                        "POST", url, json=payload, headers=headers, timeout=request.timeout
                    ) as response:
                        if response.status_code != 200 or not _is_event_stream(response):
                            await response.aread()
                            result = self._unstreamed(response, request, on_token)
                        else:
                            parser = self.stream_parser(request, on_token)
                            async for line in response.aiter_lines():
                                self._feed(parser, line)
                                if parser.done:
                                    break
                            result = self._finish(parser)
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, request) from exc
        return replace(result, latency=time.monotonic() - start, requests=1)

    def _unstreamed(
        self, response: httpx.Response, request: ChatRequest, on_token: Callable[[str], None]
    ) -> ChatResult:
        """An error, or a whole JSON answer from a server that does not stream (some
        OpenAI-compatible ones ignore `stream`): its text goes to `on_token` at once."""
        result = self._answer(response, request)
        on_token(result.content)
        return result

    def _answer(self, response: httpx.Response, request: ChatRequest) -> ChatResult:
        if response.status_code != 200:
            raise self.status_error(response, request)
        return self.parse(self.json_body(response), request)

    # -- server-sent events ----------------------------------------------------------------

    def _feed(self, parser: StreamParser, line: str) -> None:
        """One line of the event stream: the JSON of `data:` lines goes to the parser;
        blank separators, `event:` lines and `: keep-alive` comments are skipped."""
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        parser.seen = True
        if data == "[DONE]":
            parser.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self.invalid("stream chunk is not JSON") from None
        if not isinstance(chunk, dict):
            raise self.invalid("stream chunk is not a JSON object")
        parser.feed(chunk)

    def _finish(self, parser: StreamParser) -> ChatResult:
        if not parser.seen:
            raise self.invalid("empty stream")
        return parser.result()

    # -- error mapping ---------------------------------------------------------------------

    def transport_error(self, exc: httpx.HTTPError, request: ChatRequest) -> ProviderError:
        if isinstance(exc, httpx.PoolTimeout):
            return ProviderError(
                f"{self.name}: {snippet(str(exc))} for {request.timeout:g}s", retryable=True
            )
        if isinstance(exc, httpx.TimeoutException):
            return ProviderError(
                f"{self.name}: no answer within {request.timeout:g}s ({type(exc).__name__})",
                retryable=True,
            )
        detail = snippet(str(exc), request.api_key)
        return ProviderError(
            f"{self.name}: request failed ({type(exc).__name__}: {detail})", retryable=True
        )

    def status_error(self, response: httpx.Response, request: ChatRequest) -> ProviderError:
        """The error of a non-200 answer, by the retry rules of the module docstring."""
        status = response.status_code
        try:
            body = response.text
        except (httpx.HTTPError, UnicodeDecodeError):
            body = ""
        codes = error_codes(body)
        retryable = status in RETRYABLE_STATUSES
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        if should_retry in ("true", "false"):
            retryable = should_retry == "true"
        if NEVER_RETRY_CODES.intersection(codes):
            retryable = False  # even against x-should-retry: no wait brings quota back
        return ProviderError(
            f"{self.name}: HTTP {status}: {snippet(body, request.api_key)}",
            retryable=retryable,
            status_code=status,
            retry_after=parse_retry_after(response.headers) if retryable else None,
            provider_code=codes[0] if codes else None,
        )

    def stream_error(self, error: Any, request: ChatRequest) -> ProviderError:
        """A failure reported inside a stream, after the 200 (both providers do this)."""
        codes = _words(error)
        retryable = not (NEVER_RETRY_CODES | _FINAL_STREAM_ERRORS).intersection(codes)
        return ProviderError(
            f"{self.name}: error in stream: {snippet(json.dumps(error), request.api_key)}",
            retryable=retryable,
            provider_code=codes[0] if codes else None,
        )

    def stream_cut(self) -> ProviderError:
        # The connection ended before the provider said the reply was complete: what came
        # is a fragment, and the same request may well succeed next time.
        return ProviderError(f"{self.name}: the stream ended before the reply", retryable=True)

    def invalid_request(self, what: str) -> ProviderError:
        # agentq's own request cannot be put in this provider's shape: sending it would fail.
        return ProviderError(f"{self.name}: cannot send the request ({what})", retryable=False)

    def invalid(self, what: str) -> ProviderError:
        # The provider answered but not in its own format: retrying will not fix that.
        return ProviderError(f"{self.name}: invalid response ({what})", retryable=False)

    def json_body(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise self.invalid("body is not JSON") from None
        if not isinstance(data, dict):
            raise self.invalid("body is not a JSON object")
        return data


#: errors in a stream that the same request would meet again
_FINAL_STREAM_ERRORS = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error"}
)


def _is_event_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")
