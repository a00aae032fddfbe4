"""A circuit breaker per model profile: a provider that is down holds its jobs back
instead of burning their attempts.

Each operator-declared profile is one provider endpoint, so the breaker is keyed by the
profile's NAME (operator config, safe in logs and metric labels; never its URL or key).
Its state lives in Redis, changed only by the Lua scripts below, so it holds across
worker processes and hosts:

- **closed**: calls go through. Every provider request reports its outcome
  (`agentq.providers.retry` asks `_listener` in the call's context). A request that
  failed the way a provider that is down fails (`counts`: a connection error, a timeout,
  a cut stream, 5xx, 529) adds one to a streak; any answer (a 200, a 4xx, a 429) ends
  it. `AGENTQ_BREAKER_FAILURES` in a row, each within `AGENTQ_BREAKER_WINDOW_SECONDS` of
  the one before, open it.
- **open** for `AGENTQ_BREAKER_OPEN_SECONDS`: no call starts (`admit`), and a call in
  flight stops retrying at its next failure. Its job is held (`agentq.turn.finish.hold`):
  delayed, not failed, its attempt not counted, its agent slot given back.
- **half-open** when that time is over: exactly one call, the probe, is admitted (a
  Redis token with a TTL of `AGENTQ_BREAKER_PROBE_SECONDS`, so a probe whose worker died
  is replaced); the others keep waiting. An answer closes the circuit and wakes every
  job held (`_wake`); a failure opens it again for twice as long as the last time, up to
  `AGENTQ_BREAKER_OPEN_MAX_SECONDS`.

Best effort like the rate limits: with Redis unreachable the breaker admits everything
(the job-level retries still apply).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

from agentq import events
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import ProviderError
from agentq.providers import retry as provider_retry
from agentq.runtime import broker, bus
from agentq.runtime.redis import get_redis, key
from agentq.store import jobs, outbox
from agentq.store.session import transaction

log = logging.getLogger(__name__)

#: the states, as metric labels and `agentq status` shows them
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# KEYS: the profile's hash (fails, until, trips, since), its probe token, its held jobs.
# ARGV: down (1/0), failures that open it, window, open, longest open (ms).
# Returns {event, until, since, now, held}: event is '', 'opened', 'reopened' or 'closed';
# held (on 'closed') the "job conversation" members of the jobs to wake.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local down, limit, window = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local open_ms, open_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local opened = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if not down then
  if opened == 0 then
    if redis.call('HEXISTS', KEYS[1], 'fails') == 1 then redis.call('DEL', KEYS[1]) end
    return {'', 0, 0, now, {}}
  end
  -- While open, an answer to a request sent before it opened proves little.
  if now < opened then return {'', opened, since, now, {}} end
  local held = redis.call('ZRANGE', KEYS[3], 0, -1)
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return {'closed', 0, since, now, held}
end
if opened == 0 then
  local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
  if fails < limit then
    redis.call('PEXPIRE', KEYS[1], window)
    return {'', 0, 0, now, {}}
  end
  redis.call('HSET', KEYS[1], 'until', now + open_ms, 'trips', 1, 'since', now)
  redis.call('PERSIST', KEYS[1])
  return {'opened', now + open_ms, now, now, {}}
end
if now < opened then return {'', opened, since, now, {}} end
local trips = redis.call('HINCRBY', KEYS[1], 'trips', 1)
local ms = math.floor(math.min(open_ms * 2 ^ (trips - 1), open_max))
redis.call('HSET', KEYS[1], 'until', now + ms)
redis.call('DEL', KEYS[2])
return {'reopened', now + ms, since, now, {}}
"""

# KEYS: the profile's hash, probe token, held jobs. ARGV: job, conversation, probe TTL
# (ms), take (1: become the probe if none is out; 0: only look).
# Returns {-1, 0} when closed; {0, 1} for a new probe, {0, 2} for the probe already;
# else {ms to wait, 0}, and the job is noted among those to wake when it closes.
_ADMIT = """
local opened = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if opened == 0 then return {-1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = opened - now
if wait <= 0 then
  if ARGV[4] == '1' then
    if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3]) then return {0, 1} end
    if redis.call('GET', KEYS[2]) == ARGV[1] then return {0, 2} end
  end
  wait = math.max(1, redis.call('PTTL', KEYS[2]))
end
redis.call('ZADD', KEYS[3], now, ARGV[1] .. ' ' .. ARGV[2])
return {wait, 0}
"""

# The probe token back, if it is still this job's (its call ended without an outcome).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Admission:
    """What `admit` decided for a job's call."""

    #: seconds the job must wait; None: it may call now
    wait: float | None = None
    #: it calls as the half-open circuit's one probe
    probe: bool = False


def _no_transition(profile: str, state: str) -> None:
    return None


#: told of every change of state `(profile, state)`; agentq.runtime.metrics counts them
_transition: Callable[[str, str], None] = _no_transition
#: the model profile of the provider call running in this context (set by `guarding`)
_profile: ContextVar[str | None] = ContextVar("agentq_breaker_profile", default=None)


def observe(transition: Callable[[str, str], None] | None) -> None:
    """Tell `transition(profile, state)` of every change of state made in this process
    (None: nobody)."""
    global _transition
    _transition = transition or _no_transition


def enabled() -> bool:
    return get_settings().breaker_failures > 0


def _keys(profile: str) -> list[str]:
    return [
        key("breaker", profile),
        key("breaker", profile, "probe"),
        key("breaker", profile, "held"),
    ]


def counts(exc: BaseException) -> bool:
    """Whether a failure says the provider is down: a retryable error without an HTTP
    status (connection refused or reset, a timeout, a cut stream, an error inside the
    stream such as `overloaded_error`) or with a 5xx/529. Never a 4xx: 408, 409 and 429
    (rate limiting, with or without Retry-After; `insufficient_quota` is not retryable at
    all) come from a provider that is up and answering."""
    if not isinstance(exc, ProviderError) or not exc.retryable:
        return False
    return exc.status_code is None or exc.status_code >= 500


def _run(script: str, keys: list[str], *args: str | int) -> Any:
    """Run a script by its digest (EVALSHA: the source goes over the wire once)."""
    return get_redis().register_script(script)(keys=keys, args=list(args))


def admit(
    profile: str, job_id: uuid.UUID, conversation_id: uuid.UUID, *, take: bool = True
) -> Admission:
    """May the job call the profile's provider now? Closed: yes. Open: wait until it
    half-opens. Half-open: yes for exactly one job, the probe (with `take`), else wait
    for the probe's outcome. A job told to wait is woken when the circuit closes."""
    if not enabled():
        return Admission()
    s = get_settings()
    try:
        wait_ms, probe = _run(
            _ADMIT,
            _keys(profile),
            str(job_id),
            str(conversation_id),
            int(s.breaker_probe_seconds * 1000),
            1 if take else 0,
        )
    except Exception as exc:  # noqa: BLE001 - without Redis there is no breaker: call
        log.warning("circuit breaker unavailable, admitting: %s", type(exc).__name__)
        return Admission()
    if int(wait_ms) < 0:
        return Admission()
    if int(probe) == 1:
        log.info("circuit of model profile %s half-open: one probe call admitted", profile)
        _transition(profile, HALF_OPEN)
    if int(probe):
        return Admission(probe=True)
    return Admission(wait=int(wait_ms) / 1000)


def release_probe(profile: str, job_id: uuid.UUID) -> None:
    """The probe's call ended without telling whether the provider answers (cancelled,
    stopped, a bug): let another job probe at once rather than after the token's TTL."""
    try:
        _run(_RELEASE, [_keys(profile)[1]], str(job_id))
    except Exception as exc:  # noqa: BLE001 - the token runs out by itself
        log.warning("probe token not released: %s", type(exc).__name__)


def record(profile: str, error: BaseException | None) -> bool:
    """Report one provider request of `profile`: `error` None if it answered. An error
    with an HTTP status that `counts` not (a 4xx) is an answer too: the provider is up.
    Returns whether the call may retry (False: the circuit is open; its job waits
    instead). Never raises."""
    if error is not None and not counts(error):
        if getattr(error, "status_code", None) is None:
            return True  # a bug, a request that could not be made: nothing to learn
        error = None
    s = get_settings()
    try:
        event, until, since, now, held = _run(
            _RECORD,
            _keys(profile),
            1 if error is not None else 0,
            s.breaker_failures,
            int(s.breaker_window_seconds * 1000),
            int(s.breaker_open_seconds * 1000),
            int(s.breaker_open_max_seconds * 1000),
        )
    except Exception as exc:  # noqa: BLE001 - without Redis there is no breaker
        log.warning("circuit breaker unavailable: %s", type(exc).__name__)
        return True
    if event:
        _changed(profile, event, int(until), int(since), int(now), held)
    return error is None or int(until) == 0


def _changed(profile: str, event: str, until: int, since: int, now: int, held: list[str]) -> None:
    """After a change of state: log, count, store the operator event, wake what waited."""
    try:
        notice: events.Event
        if event == "closed":
            woken = _wake(held)
            log.warning(
                "circuit of model profile %s closed after %.1f s open: the provider answers; "
                "%d held jobs woken",
                profile,
                (now - since) / 1000,
                woken,
            )
            _transition(profile, CLOSED)
            notice = events.CircuitClosed(
                profile=profile, open_seconds=round((now - since) / 1000, 3), woken=woken
            )
        else:
            seconds = (until - now) / 1000
            log.warning(
                "circuit of model profile %s %s: its provider is failing; calls wait %.1f s",
                profile,
                event,
                seconds,
            )
            _transition(profile, OPEN)
            notice = events.CircuitOpened(
                profile=profile, open_seconds=seconds, reopened=event == "reopened"
            )
        with transaction() as tx:
            rows = outbox.insert_events(tx, [notice])
        bus.publish(rows)
    except Exception:  # a report must not fail the call it reports on
        log.exception("circuit of model profile %s: %s not fully handled", profile, event)


def _wake(held: Iterable[str]) -> int:
    """Make the held jobs due now and advance their conversations; how many woke."""
    members = [m.split(" ") for m in held]
    if not members:
        return 0
    job_ids = [uuid.UUID(job) for job, _ in members]
    with transaction() as tx:
        conv_ids = jobs.make_due(tx, job_ids, utcnow())
    for conv_id in conv_ids:
        broker.send(broker.ADVANCE, conv_id)
    return len(conv_ids)


@dataclass(frozen=True)
class State:
    """A profile's circuit as `agentq status` and the metrics show it."""

    state: str
    #: seconds until it half-opens (open), or until the probe's token runs out
    retry_in: float = 0.0


def states(profiles: Iterable[str]) -> dict[str, State]:
    """The circuit of each profile (closed unless Redis says otherwise)."""
    names = list(profiles)
    r = get_redis()
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hget(_keys(name)[0], "until")
        pipe.pttl(_keys(name)[1])
    pipe.time()
    *found, (now_s, now_us) = pipe.execute()
    now = now_s * 1000 + now_us // 1000
    out = {}
    for i, name in enumerate(names):
        until, probe_ttl = int(found[2 * i] or 0), int(found[2 * i + 1])
        if until == 0:
            out[name] = State(CLOSED)
        elif now < until:
            out[name] = State(OPEN, (until - now) / 1000)
        else:
            out[name] = State(HALF_OPEN, max(probe_ttl, 0) / 1000)
    return out


@contextmanager
def guarding(profile: str) -> Iterator[None]:
    """Within it, the provider requests of this context report to `profile`'s breaker
    (enter it inside the coroutine that calls: each call is its own asyncio task)."""
    token = _profile.set(profile if enabled() else None)
    try:
        yield
    finally:
        _profile.reset(token)


def _listener() -> Callable[[BaseException | None], bool] | None:
    profile = _profile.get()
    return None if profile is None else partial(record, profile)


provider_retry.observe_outcomes(_listener)
