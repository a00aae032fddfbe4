"""Retries of transient provider failures: exponential backoff, full jitter, Retry-After.

Only `ProviderError(retryable=True)` is retried; anything else (a 400, a bad key, an
invalid response, a bug) fails at once, since repeating it cannot help.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from agentq.errors import ProviderError
from agentq.providers.base import ChatRequest, ChatResult, Provider

log = logging.getLogger(__name__)

#: the longest Retry-After honoured; a provider asking for more gets retried sooner
#: (or the job-level retry takes over) rather than holding a worker thread for minutes
RETRY_AFTER_CAP = 60.0


def _no_meter(provider: str) -> AbstractContextManager[object]:
    return nullcontext()


def _no_count(provider: str) -> None:
    return None


#: how each provider request is measured and each retry counted; `observe` sets them
#: (agentq.runtime.metrics does, so that providers need not know the process's metrics)
_meter_request: Callable[[str], AbstractContextManager[object]] = _no_meter
_count_retry: Callable[[str], None] = _no_count


def observe(
    request: Callable[[str], AbstractContextManager[object]] | None = None,
    retry: Callable[[str], None] | None = None,
) -> None:
    """Measure every provider request with `request(provider_name)`, a context manager
    around the request (it sees the exception of a failed one), and count every retry
    with `retry(provider_name)`. None puts back the default, which does nothing."""
    global _meter_request, _count_retry
    _meter_request = request or _no_meter
    _count_retry = retry or _no_count


def _nobody() -> Callable[[BaseException | None], bool] | None:
    return None


#: who hears, in the current context, the outcome of each provider request: a function
#: `report(error)` (error None: the provider answered) returning whether retrying may go
#: on, or None. The circuit breaker (agentq.runtime.breaker) sets it, so that providers
#: need not know of it; False stops the retries (the circuit opened: the job waits).
_outcomes: Callable[[], Callable[[BaseException | None], bool] | None] = _nobody


def observe_outcomes(
    listener: Callable[[], Callable[[BaseException | None], bool] | None] | None,
) -> None:
    """Report every provider request's outcome to what `listener()` returns in the
    context of the request (None: nobody), once the request has ended; a report saying
    False ends the retries. `acall_with_retries` runs it in a thread off the event loop,
    as it may wait on Redis."""
    global _outcomes
    _outcomes = listener or _nobody


def retry_wait(
    attempt: int,
    error: BaseException | None,
    base: float,
    cap: float,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry).

    Full jitter: uniform in [0, min(cap, base * 2**attempt)], so that many clients hit
    by the same outage do not retry in lockstep. When `error` carries a `retry_after`,
    the wait is at least that, up to `RETRY_AFTER_CAP` seconds (even beyond `cap`: the
    provider said when it will answer, and asking earlier only earns another 429).
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), 62))
    wait = max(0.0, ceiling) * rand()
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None and retry_after > 0:
        wait = max(wait, min(float(retry_after), RETRY_AFTER_CAP))
    return wait


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class _Halt:
    """Set when a request's report says not to retry (the provider's circuit opened)."""

    def __init__(self) -> None:
        self.halted = False

    def retryable(self, exc: BaseException) -> bool:
        return _retryable(exc) and not self.halted


def _waiter(base: float, cap: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return retry_wait(state.attempt_number - 1, error, base, cap)

    return wait


def _before_sleep(
    name: str, on_retry: Callable[[ProviderError, float], None] | None
) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        _count_retry(name)
        if on_retry is None or state.outcome is None or state.next_action is None:
            return
        error = state.outcome.exception()
        if not isinstance(error, ProviderError):
            return
        try:
            on_retry(error, state.next_action.sleep)
        except Exception:  # a metrics hook must not turn a retry into a failure
            log.exception("on_retry callback failed")

    return before_sleep


def call_with_retries(
    provider: Provider,
    request: ChatRequest,
    *,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
    on_token: Callable[[str], None] | None = None,
    on_retry: Callable[[ProviderError, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ChatResult:
    """`provider.complete(request)`, retried up to `max_retries` times (so at most
    `max_retries + 1` requests) while it raises a retryable `ProviderError`.

    Returns the result with `latency` (seconds for all requests and waits) and `requests`
    filled in. Raises the last `ProviderError` itself, or the first non-retryable error.
    `on_retry(error, wait_seconds)` is called before each wait. With `on_token`, tokens of
    an attempt that fails mid-stream have already been passed on; the retry starts over.
    """
    start = time.monotonic()
    requests = 0
    halt = _Halt()

    def attempt() -> ChatResult:
        nonlocal requests
        requests += 1
        report = _outcomes()
        try:
            with _meter_request(getattr(provider, "name", "unknown")):
                result = provider.complete(request, on_token=on_token)
        except Exception as exc:
            if report is not None and not report(exc):
                halt.halted = True
            raise
        if report is not None:
            report(None)
        return result

    retrying = Retrying(
        retry=retry_if_exception(halt.retryable),
        stop=stop_after_attempt(max(max_retries, 0) + 1),
        wait=_waiter(backoff_base, backoff_max),
        before_sleep=_before_sleep(getattr(provider, "name", "unknown"), on_retry),
        sleep=sleep,
        reraise=True,  # the caller sees the ProviderError, not tenacity's RetryError
    )
    result = retrying(attempt)
    return replace(result, latency=time.monotonic() - start, requests=requests)


async def acall_with_retries(
    provider: Provider,
    request: ChatRequest,
    *,
    max_retries: int,
    backoff_base: float,
    backoff_max: float,
    on_token: Callable[[str], None] | None = None,
    on_retry: Callable[[ProviderError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ChatResult:
    """`await provider.acomplete(request)` with the rules of `call_with_retries`: at most
    `max_retries + 1` requests, retryable `ProviderError`s only, waits of `retry_wait`
    (Retry-After honoured) slept with `asyncio.sleep`. Returns the result with `latency`
    and `requests` filled in; raises the last `ProviderError` itself.

    Cancelling the awaiting task ends it at once, during a request (whose connection is
    closed) or a wait; the CancelledError is never retried.
    """
    start = time.monotonic()
    requests = 0
    name = getattr(provider, "name", "unknown")
    halt = _Halt()
    retrying = AsyncRetrying(
        retry=retry_if_exception(halt.retryable),
        stop=stop_after_attempt(max(max_retries, 0) + 1),
        wait=_waiter(backoff_base, backoff_max),
        before_sleep=_before_sleep(name, on_retry),
        sleep=sleep,
        reraise=True,
    )

    async def attempt() -> ChatResult:
        nonlocal requests
        requests += 1
        report = _outcomes()
        try:
            with _meter_request(name):
                result = await provider.acomplete(request, on_token=on_token)
        except Exception as exc:  # (a cancellation is no outcome: it is not reported)
            if report is not None and not await asyncio.to_thread(report, exc):
                halt.halted = True
            raise
        if report is not None:
            await asyncio.to_thread(report, None)
        return result

    result: ChatResult = await retrying(attempt)
    return replace(result, latency=time.monotonic() - start, requests=requests)
