"""Schedule: start a conversation's next job, one at a time, in order, within its agent's
limits.

- A partial UNIQUE index lets a conversation have one open (active or delayed) job.
- Claiming a job bumps its `lease_token`, a fencing token: a worker that lost its lease
  (it was presumed dead) finds its token stale and its writes refused.
- A claimed job carries `lease_until`; past it the job is claimed again by whoever
  advances the conversation next (the reconciler, at the latest).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from agentq import events
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import ConversationNotFound
from agentq.runtime import limits, metrics
from agentq.states import HOLDING_AGENT_STATES, AgentStatus, JobStatus
from agentq.store import agents, conversations, jobs, parked
from agentq.store.session import Tx
from agentq.turn.outcome import Claim, Effects

log = logging.getLogger(__name__)

#: a conversation parked at its agent's concurrency limit is looked at again after this
#: long, once per agent however many are parked (a freed slot wakes them at once; this
#: covers a slot freed just as the conversation parked)
LIMIT_CHECK_SECONDS = 2.0
#: why a job whose every attempt ended with its worker gone fails
WORKER_LOST = "its worker was lost during the last attempt"


def lock_conversation(tx: Tx, conv_id: uuid.UUID) -> None:
    """Take the conversation's turn (its row lock), or ConversationNotFound."""
    if conversations.lock(tx, conv_id) is None:
        raise ConversationNotFound(conv_id)


def start_next(tx: Tx, conv_id: uuid.UUID, out: Effects) -> None:
    """Claim the conversation's next job if none runs, in the caller's transaction (which
    holds the conversation locked); what it did goes into `out`.

    Re-claims a job whose lease ran out (its worker is presumed dead) or whose retry delay
    is over. A job that cannot start for its agent (paused, at its concurrency limit or
    rate limit) parks: nothing is scheduled for the conversation. The agent wakes the
    oldest parked conversations when it can take them (a slot freed, resumed, the rate
    limit's next start: `out.check_agent`), so waiting costs nothing per conversation.
    """
    now = utcnow()
    job = out.next_job if out.next_job is not None else jobs.next_job(tx, conv_id)
    if job is None:
        return
    if job.status == JobStatus.ACTIVE and job.lease_until and job.lease_until > now:
        return
    if job.status == JobStatus.DELAYED and job.next_attempt_at and job.next_attempt_at > now:
        # Woken early (a countdown fired ahead of the delay): look again when it is over.
        out.advance_in = (job.next_attempt_at - now).total_seconds()
        return
    if job.status == JobStatus.ACTIVE:
        log.warning("job %s lease expired; claiming it again", job.id)
    # The agent is read with the job, not locked: claims of one agent run side by side
    # (Redis holds its limits); a pause that commits meanwhile lets this one start, as if
    # it had come first.
    if job.agent_status == AgentStatus.PAUSED:
        return  # resuming wakes it
    if job.agent_status == AgentStatus.INACTIVE:
        out.fail = (job.id, f"agent {job.agent_name} is stopped")
        return
    if job.status == JobStatus.ACTIVE and job.attempts >= job.max_attempts:
        out.fail = (job.id, WORKER_LOST)
        return
    verdict = limits.acquire(
        job.agent_id,
        job.id,
        max_running=job.max_concurrent_jobs,
        per_minute=job.rate_limit_per_minute,
        tenant_id=job.tenant_id,
    )
    if not verdict.ok:
        # At the tenant's cap, one of its own jobs ending wakes it (effects.run).
        at_limit = verdict.retry_in is None and not verdict.tenant_full
        if at_limit and job.agent_status == AgentStatus.ACTIVE:
            out.busy = job.agent_id  # at its concurrency limit
        wait = verdict.retry_in if verdict.retry_in is not None else LIMIT_CHECK_SECONDS
        out.check_agent = (job.agent_id, wait)
        return
    # The start is when the slot was taken, not when this transaction began. The claim's
    # lease lasts until its LLM task is taken up (then the running call renews its own).
    now = utcnow()
    # Its attempts do not change meanwhile: its row is locked (next_job) or this
    # transaction's own (made by its dispatch, not committed yet).
    attempt = job.attempts + 1
    responding = events.AgentResponding(
        conversation_id=conv_id, agent_id=job.agent_id, job_id=job.id, attempt=attempt
    )
    made = jobs.claim(tx, job.id, now, now + timedelta(seconds=pickup_seconds()), responding)
    if made is None:  # its live worker renewed the lease meanwhile: the slot is its own
        return
    claimed, told = made
    out.taken = (job.agent_id, job.id)
    if job.agent_status == AgentStatus.ACTIVE and verdict.running >= job.max_concurrent_jobs:
        out.busy = job.agent_id
    if job.status == JobStatus.WAITING:
        metrics.queue_waited(now - job.created_at)
    out.claim = Claim(job.id, conv_id, claimed.lease_token, claimed.attempts + 1)
    out.events += told


def mark_busy(tx: Tx, outs: list[Effects]) -> None:
    """Mark busy the agents claims filled (`Effects.busy`), last in their transaction and
    in id order: a transaction that claims for several conversations (a batch of windows)
    locks all its conversations and jobs before any agent, as the lock order wants."""
    for agent_id in sorted({out.busy for out in outs if out.busy is not None}):
        agents.mark_busy(tx, agent_id)


def pickup_seconds() -> float:
    """How long a claim holds its job (and agent slot) before its LLM task is taken up."""
    s = get_settings()
    return max(s.job_lease_seconds, s.claim_pickup_seconds)


def waiting_for(
    tx: Tx, agent_id: uuid.UUID, *, exclude: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Conversations parked for the agent, oldest first, as many as it could start now
    (free slots, starts its rate limit still allows, its tenant's cap); none while it is
    paused or stopped."""
    agent = agents.limits_of(tx, agent_id)
    if agent is None or agent.status in HOLDING_AGENT_STATES:
        return []
    room = limits.room(
        agent_id, max_running=agent.max_concurrent_jobs, per_minute=agent.rate_limit_per_minute
    )
    free = min(room, _tenant_free(agent.tenant_id))
    if free <= 0:  # the next slot given back, or the agent's check, wakes the next one
        return []
    return parked.for_agent(tx, agent_id, free, utcnow(), exclude=exclude)


def waiting_in_tenant(tx: Tx, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    """Conversations of the tenant parked at its cap (or their agents' limits), oldest
    first, as many as the tenant has free slots."""
    free = _tenant_free(tenant_id)
    return parked.in_tenant(tx, tenant_id, free, utcnow()) if free > 0 else []


def _tenant_free(tenant_id: uuid.UUID | None) -> int:
    """Slots the tenant's cap leaves free (no cap: as many as anyone asks)."""
    cap = limits.tenant_cap()
    if not cap or tenant_id is None:
        return 1 << 30
    return cap - limits.tenant_running(tenant_id)
