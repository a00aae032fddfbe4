"""Backpressure: a tenant may have at most so many messages pending, posted and not yet
answered (AGENTQ_TENANT_MAX_PENDING_MESSAGES, default 10,000; a tenant's own
`max_pending_messages` overrides it; 0: no limit). A post over the limit raises
`Overloaded` (HTTP 429 with Retry-After) before anything is written.

Pending, in the database (`agentq.store.tenants.pending`): the tenant's posted messages
(not agents' replies, not agentq's notices, not deleted) that dispatch has not turned into
jobs yet (seq past the conversation's `handled_seq`) or that trigger an unfinished job
(waiting, active, delayed). That count is exact but costs O(the tenant's pending work):
10,000 rows read on every post of a tenant near its limit, the moment posts matter most.

So a post reads a count kept in Redis (one hash a tenant: the count `n`, when it was
counted `at`, places taken in all `total`), one Lua call that checks and takes a place in
one step:

- under the limit, `n` goes up by one and the post goes on: one Redis round trip plus one
  indexed read of the conversation's tenant, and no shared row locked (a counter row in
  the database would make every post of a tenant wait for the one before);
- nothing in Redis (first post, or an hour idle: the hash lives COUNT_TTL_SECONDS after
  each count), or at the limit with a count older than AGENTQ_TENANT_PENDING_RECOUNT_SECONDS:
  the database counts again (the truth) and the same call decides on that count;
- at the limit with a fresh count: refused, Retry-After the seconds until a count may be
  taken again (at least 1).

Nothing lowers `n` when replies arrive: the count between two countings is the pending
work at the last counting plus every post since, never less than the truth but for the
race below. A tenant stays refused at most AGENTQ_TENANT_PENDING_RECOUNT_SECONDS after its
replies arrive, and pays one COUNT a period while it is refused (refused posts cost one
Redis call each).

How far concurrent posts may overshoot: a counting adds to what it read the places taken
while it ran (the hash's `total` before and after; those posts are in the count or still
in flight, so this can only count too many). Missed are only the posts that took their
place before a counting began and commit after its read: at most the tenant's posts in
flight at that instant (the API threads posting for it at once), once per counting; 0
in the test of 8 threads racing a tenant's first counting. A post whose transaction
fails after taking its place (a lost race, a crash) counts one too many until the next
counting.

The check runs in the post's transaction after the conversation is locked and the author
and idempotency key checked (a replayed post is answered, never refused), just before
the insert. With Redis unreachable the database's count decides alone (slower, exact).
"""

from __future__ import annotations

import logging
import math
import uuid

import redis

from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import Overloaded
from agentq.runtime.redis import get_redis, key
from agentq.store import tenants
from agentq.store.session import Tx

log = logging.getLogger(__name__)

#: how long a tenant's count lives in Redis after it was counted (an idle tenant leaves
#: nothing; a busy one is counted again at least this often)
COUNT_TTL_SECONDS = 3600

# KEYS[1]: the tenant's count, a hash: n (the count), at (when counted, ms), total (places
# taken since the hash was made). ARGV: limit, now (ms), recount period (ms), ttl (ms), a
# fresh count or '', `total` when that counting began. Returns {1, n} admitted (n with
# this post), {0, n, at} refused, {-1, n, total} count again.
_ADMIT = """
local now = tonumber(ARGV[2])
if ARGV[5] ~= '' then
  -- places taken while the database counted: in the count or in flight, so added
  local since = (tonumber(redis.call('HGET', KEYS[1], 'total')) or 0) - tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], 'n', tonumber(ARGV[5]) + math.max(since, 0), 'at', now)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
local total = tonumber(redis.call('HGET', KEYS[1], 'total')) or 0
if n == nil then
  return {-1, 0, total}
end
if n < tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], 'total', 1)
  return {1, redis.call('HINCRBY', KEYS[1], 'n', 1)}
end
local at = tonumber(redis.call('HGET', KEYS[1], 'at')) or 0
if ARGV[5] == '' and now - at >= tonumber(ARGV[3]) then
  return {-1, n, total}
end
return {0, n, at}
"""


def limit_of(tenant: tenants.Limits) -> int:
    """The tenant's limit on pending messages; 0: none."""
    own = tenant.max_pending_messages
    return get_settings().tenant_max_pending_messages if own is None else own


def _key(tenant_id: uuid.UUID) -> str:
    return key("tenant", tenant_id, "pending")


def admit(tx: Tx, tenant: tenants.Limits | None) -> None:
    """Take a place for one more pending message of the tenant (a conversation's, read
    with its lock); Overloaded if it has its limit's worth pending already (call before
    writing anything)."""
    if tenant is None:
        return
    limit = limit_of(tenant)
    if limit <= 0:
        return
    period_ms = int(get_settings().tenant_pending_recount_seconds * 1000)
    now_ms = int(utcnow().timestamp() * 1000)
    args: list[int | str] = [limit, now_ms, period_ms, COUNT_TTL_SECONDS * 1000, "", 0]
    try:
        script = get_redis().register_script(_ADMIT)
        verdict = script(keys=[_key(tenant.id)], args=args)
        if verdict[0] < 0:
            args[4:] = [tenants.pending(tx, tenant.id), verdict[2]]
            verdict = script(keys=[_key(tenant.id)], args=args)
    except redis.RedisError as exc:
        log.warning(
            "pending count unavailable in Redis (%s): counted in the database", type(exc).__name__
        )
        n = tenants.pending(tx, tenant.id)
        verdict = [1 if n < limit else 0, n, now_ms]
    if verdict[0] == 1:
        return
    n, at = int(verdict[1]), int(verdict[2])
    retry_after = max(1, math.ceil((at + period_ms - now_ms) / 1000))
    raise Overloaded(tenant.name, n, limit, retry_after)
