"""Per-tenant caps on what holds the API open: waiting posts and SSE streams.

A tenant's holders of one kind are a Redis sorted set (member: a random holder id, score:
when its lease ends, in Unix seconds), so a cap holds across every API process, and a
process that dies leaks nothing for longer than a lease: expired holders are dropped
before counting. A wait's lease ends with its deadline (plus a margin); a stream renews
its lease while it is open.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

from fastapi.responses import JSONResponse

from agentq.api import problems
from agentq.api.aredis import async_redis
from agentq.api.auth import still_valid
from agentq.api.settings import api_settings
from agentq.ops.keys import Principal
from agentq.runtime.redis import key

log = logging.getLogger(__name__)

#: a lease outlives the deadline of what it holds by this much (slow final reads, skew)
MARGIN_SECONDS = 30.0

# KEYS[1]: the tenant's set; ARGV: now, lease end, holder, cap, key ttl (ms).
# Returns {1} when admitted, else {0, the earliest lease end}.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
  return {1}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, first[2]}
"""

# KEYS[1]: the tenant's set; ARGV: lease end, holder, key ttl (ms).
_RENEW = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


class Busy(Exception):
    """The tenant holds its cap of this kind already."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        """The 429 problem, with `Retry-After` in seconds."""
        return problems.problem(
            429,
            self.detail,
            code="too_many_requests",
            headers={"Retry-After": str(self.retry_after)},
        )


@dataclass
class Lease:
    """One held slot; `release()` frees it (expiry frees it anyway)."""

    key: str
    holder: str

    async def renew(self, seconds: float) -> None:
        """Hold on for `seconds` more from now (best effort: a failure is logged)."""
        try:
            await async_redis().eval(
                _RENEW, 1, self.key, _end(time.time(), seconds), self.holder, _ttl_ms(seconds)
            )
        except Exception as exc:  # noqa: BLE001 - the lease may lapse; the cap stays bounded
            log.warning("slot lease not renewed: %s", type(exc).__name__)

    async def release(self) -> None:
        try:
            await async_redis().zrem(self.key, self.holder)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            log.warning("slot not released (it expires): %s", type(exc).__name__)


def _end(now: float, seconds: float) -> float:
    return now + seconds + MARGIN_SECONDS


def _ttl_ms(seconds: float) -> int:
    return int((seconds + MARGIN_SECONDS) * 1000) + 1000


async def acquire(kind: str, tenant_id: uuid.UUID, cap: int, seconds: float) -> Lease | float:
    """Take one of the tenant's `cap` slots of `kind`, to hold for about `seconds` (the
    lease lasts MARGIN_SECONDS more). Returns the lease, or, when all `cap` are held, in
    how many seconds the earliest held one is due to end. Redis errors propagate:
    without Redis no cap can be kept."""
    lease = Lease(key("api", kind, tenant_id), uuid.uuid4().hex)
    now = time.time()
    got = await async_redis().eval(
        _ACQUIRE, 1, lease.key, now, _end(now, seconds), lease.holder, cap, _ttl_ms(seconds)
    )
    if int(got[0]) == 1:
        return lease
    return float(got[1]) - MARGIN_SECONDS - now


def retry_after(seconds: float) -> int:
    """Whole seconds for `Retry-After`, at least 1."""
    return max(1, math.ceil(seconds))


@dataclass
class StreamGuard:
    """What keeps an open stream honest: its slot among the tenant's streams, renewed
    while it is open, and its key, re-checked every `every` seconds."""

    who: Principal
    lease: Lease
    every: float
    next_check: float = 0.0

    @property
    def lease_seconds(self) -> float:
        return 3 * self.every

    async def ok(self) -> bool:
        """False once the key is revoked (cheap between checks: a clock read)."""
        now = time.monotonic()
        if now < self.next_check:
            return True
        self.next_check = now + self.every
        await self.lease.renew(self.lease_seconds)
        return await still_valid(self.who)

    async def close(self) -> None:
        await self.lease.release()


async def open_stream(who: Principal) -> StreamGuard:
    """A slot among the tenant's streams: Busy past AGENTQ_API_MAX_STREAMS_PER_TENANT,
    NotReady without Redis."""
    settings = api_settings()
    every = settings.key_recheck_seconds
    cap = settings.max_streams_per_tenant
    try:
        got = await acquire("streams", who.tenant_id, cap, 3 * every)
    except Exception as exc:  # noqa: BLE001 - Redis down: no live events either
        raise problems.NotReady(f"live events unavailable: {type(exc).__name__}") from exc
    if not isinstance(got, Lease):
        raise Busy(
            f"{cap} streams of this tenant are open already (AGENTQ_API_MAX_STREAMS_PER_TENANT)",
            settings.stream_retry_after_seconds,
        )
    return StreamGuard(who, got, every, time.monotonic() + every)
