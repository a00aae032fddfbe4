"""Per-agent limits that hold across all workers and hosts: at most `max_concurrent_jobs`
running at once, and at most `rate_limit_per_minute` starts in any rolling period.

Both live in Redis and are checked and taken in one Lua script (`acquire.lua`). A job
over a limit is not dropped: it stays waiting and its conversation is advanced again when
a slot frees or the rate allows. After a Redis loss the reconciler re-registers the
running jobs (`restore`), and slots of dead workers expire with their lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.config import get_settings
from agentq.runtime.redis import get_redis, key
from agentq.states import FINISHED_JOB_STATES, JobStatus

_ACQUIRE = (Path(__file__).parent / "acquire.lua").read_text()
_RELEASE = (Path(__file__).parent / "release.lua").read_text()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    #: running jobs of the agent after taking the slot (when ok)
    running: int = 0
    #: seconds until the rate limit allows a start; None: wait for a free slot
    retry_in: float | None = None
    #: refused for the tenant's cap on running jobs (not the agent's limits)
    tenant_full: bool = False


def _keys(agent_id: uuid.UUID | str) -> list[str]:
    return [key("agent", agent_id, "running"), key("agent", agent_id, "starts")]


def _tenant_keys(tenant_id: uuid.UUID | str) -> list[str]:
    return [key("tenant", tenant_id, "running"), key("tenant", tenant_id, "parked")]


def tenant_cap() -> int:
    """Jobs of one tenant that may run at once (0: no cap)."""
    return get_settings().tenant_max_concurrent_jobs


def acquire(
    agent_id: uuid.UUID | str,
    job_id: uuid.UUID | str,
    *,
    max_running: int,
    per_minute: int,
    tenant_id: uuid.UUID | str | None = None,
) -> Verdict:
    """Take a slot for `job_id` if the agent's limits (and its tenant's cap) allow it
    (idempotent per job)."""
    s = get_settings()
    cap = s.tenant_max_concurrent_jobs if tenant_id is not None else 0
    script = get_redis().register_script(_ACQUIRE)
    ok, value = script(
        keys=[*_keys(agent_id), *_tenant_keys(tenant_id or "-"), key("agent", agent_id, "tenant")],
        args=[
            str(job_id),
            _lease_ms(),
            max_running,
            per_minute,
            int(s.rate_limit_period_seconds * 1000),
            cap,
            str(tenant_id or ""),
        ],
    )
    if ok:
        return Verdict(True, running=int(value))
    if int(value) == -2:
        return Verdict(False, tenant_full=True)
    return Verdict(False, retry_in=None if int(value) < 0 else int(value) / 1000)


def release(
    agent_id: uuid.UUID | str, job_id: uuid.UUID | str, *, unstarted: bool = False
) -> uuid.UUID | None:
    """Give the job's slot back; with `unstarted` (the claim that took it did not
    commit), its start no longer counts against the rate limit either. Returns its
    tenant when jobs wait for the tenant's cap (the caller wakes them)."""
    running, starts = _keys(agent_id)
    script = get_redis().register_script(_RELEASE)
    tenant = script(
        keys=[running, key("agent", agent_id, "tenant"), starts],
        args=[str(job_id), key("tenant", ""), "1" if unstarted else "0"],
    )
    if not tenant:
        return None
    return uuid.UUID(tenant.decode() if isinstance(tenant, bytes) else tenant)


def tenant_running(tenant_id: uuid.UUID | str) -> int:
    """The tenant's slots taken (leases not run out)."""
    r = get_redis()
    now_s, now_us = r.time()
    return int(r.zcount(_tenant_keys(tenant_id)[0], now_s * 1000 + now_us // 1000, "+inf"))


def forget_parked(tenant_id: uuid.UUID | str) -> None:
    """Nothing waits for the tenant's cap any more."""
    get_redis().delete(_tenant_keys(tenant_id)[1])


def extend(slots: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Renew the slots (agent, job) of jobs still running here, by one lease from now
    (their worker is alive), the tenant's too; a slot already given back stays given
    back."""
    if not slots:
        return
    s = get_settings()
    r = get_redis()
    now_s, now_us = r.time()
    expiry = now_s * 1000 + now_us // 1000 + int(s.job_lease_seconds * 1000)
    agent_ids = sorted({agent_id for agent_id, _ in slots})
    tenants: dict[uuid.UUID, Any] = {}
    if s.tenant_max_concurrent_jobs:
        found = r.mget([key("agent", a, "tenant") for a in agent_ids])
        tenants = {
            a: t.decode() if isinstance(t, bytes) else t
            for a, t in zip(agent_ids, found, strict=True)
            if t
        }
    pipe = r.pipeline(transaction=False)
    for agent_id, job_id in slots:
        pipe.zadd(_keys(agent_id)[0], {str(job_id): expiry}, xx=True)
        if agent_id in tenants:
            pipe.zadd(_tenant_keys(tenants[agent_id])[0], {str(job_id): expiry}, xx=True)
    for agent_id in agent_ids:
        # The set itself must outlive its longest call, not only the slot that made it.
        pipe.pexpire(_keys(agent_id)[0], _set_ttl_ms())
        if agent_id in tenants:
            pipe.pexpire(_tenant_keys(tenants[agent_id])[0], _set_ttl_ms())
            pipe.pexpire(key("agent", agent_id, "tenant"), _set_ttl_ms())
    pipe.execute()


def _lease_ms() -> int:
    """A slot's lease when taken (a claim's pickup lease; a running call renews less)."""
    s = get_settings()
    return int(max(s.job_lease_seconds, s.claim_pickup_seconds) * 1000)


def _set_ttl_ms() -> int:
    """How long an agent's set of running jobs outlives its last renewal (as acquire.lua)."""
    s = get_settings()
    return int(max(s.job_lease_seconds, s.claim_pickup_seconds) * 2000)


def room(agent_id: uuid.UUID | str, *, max_running: int, per_minute: int) -> int:
    """How many more jobs of the agent could start now: the slots its concurrency limit
    leaves free and the starts its rate limit still allows in this period, whichever is
    fewer (its tenant's cap aside). Read-only, as acquire.lua counts."""
    r = get_redis()
    now_s, now_us = r.time()
    now = now_s * 1000 + now_us // 1000
    running_key, starts_key = _keys(agent_id)
    period = int(get_settings().rate_limit_period_seconds * 1000)
    pipe = r.pipeline(transaction=False)
    pipe.zcount(running_key, now, "+inf")
    pipe.zcount(starts_key, now - period, "+inf")
    taken, started = pipe.execute()
    return min(max_running - int(taken), per_minute - int(started))


def running(agent_id: uuid.UUID | str) -> int:
    """The agent's slots taken, leaving out those whose lease ran out (a dead worker's,
    dropped at the next acquire)."""
    r = get_redis()
    now_s, now_us = r.time()
    return int(r.zcount(_keys(agent_id)[0], now_s * 1000 + now_us // 1000, "+inf"))


def orphans(
    agent_id: uuid.UUID | str,
    statuses: Callable[[list[uuid.UUID]], dict[uuid.UUID, str]],
    older_than: float,
) -> list[uuid.UUID]:
    """Slots of the agent held for jobs that do not run (a crash between a commit and the
    slot's release, or a claim whose transaction died): finished or unknown jobs, and jobs
    back to waiting whose slot was taken more than `older_than` seconds ago (a claim's
    transaction lasts far less). `statuses` reads the jobs' states from the database."""
    r = get_redis()
    now_s, now_us = r.time()
    now_ms = now_s * 1000 + now_us // 1000
    held: list[Any] = r.zrange(_keys(agent_id)[0], 0, -1, withscores=True)
    if not held:
        return []
    jobs = {uuid.UUID(m.decode() if isinstance(m, bytes) else m): float(t) for m, t in held}
    known = statuses(list(jobs))
    # A slot's score is its expiry: taken (or renewed) at most one pickup lease before it.
    taken_before = now_ms + _lease_ms() - older_than * 1000
    return [
        job_id
        for job_id, expiry in jobs.items()
        if known.get(job_id) in (None, *FINISHED_JOB_STATES)
        or (known[job_id] != JobStatus.ACTIVE and expiry < taken_before)
    ]


def restore(agent_id: uuid.UUID | str, job_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Re-register running jobs whose slots a Redis loss forgot (reconciler). Returns the
    jobs it had to add; the caller gives back those that finished meanwhile."""
    if not job_ids:
        return []
    s = get_settings()
    r = get_redis()
    now_s, now_us = r.time()
    expiry = now_s * 1000 + now_us // 1000 + int(s.job_lease_seconds * 1000)
    pipe = r.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.zadd(_keys(agent_id)[0], {str(job_id): expiry}, nx=True)
    pipe.pexpire(_keys(agent_id)[0], _set_ttl_ms())
    added = pipe.execute()[: len(job_ids)]
    return [j for j, new in zip(job_ids, added, strict=True) if new]
