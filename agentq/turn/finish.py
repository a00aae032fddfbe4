"""Finish: a job's end. Either its reply is written, once, or an attempt failed: the job
waits for the next (holding no worker) or fails visibly.

Every step is idempotent and fenced by the claim's `lease_token`, so a redelivered or
duplicated task, or a worker that outlived its lease, changes nothing twice: `complete`
writes only while the job is active (under its row lock, and `messages.reply_to_job_id`
is UNIQUE, so a job has one reply at most).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from agentq import events
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.states import HOLDING_AGENT_STATES, JobStatus, Role
from agentq.store import agents, contexts, conversations, jobs, messages, outbox, parked, writes
from agentq.store.session import Record, Tx
from agentq.turn.outcome import Effects, Then
from agentq.turn.responders import autonomous


def complete(
    tx: Tx,
    job_id: uuid.UUID,
    answer: dict[str, Any] | None,
    token: int | None,
    cache: contexts.Pending | None = None,
) -> Effects | None:
    """Write the job's reply and finish it; None if it was not this call's to write.

    With `answer`, the provider's answer for the claim `token`, if that claim is still
    current; without, the answer stored on the job earlier. `cache`: the context cache
    its call read (`Call.cache`), written with the reply.

    Every turn ends here, so it is three statements on PostgreSQL: lock the conversation
    (reading what the rest needs), finish the job, then in one statement the reply, its
    `llm_messages` and `message_jobs` rows, its events and the agent's freed slot
    (`agentq.store.writes`): conversation, job, agent, the lock order.
    """
    now = utcnow()
    conv = conversations.lock_for_reply(tx, job_id, now)
    if conv is None:
        return None
    if answer is None:
        answer = jobs.stored_answer(tx, job_id)
        if answer is None:
            return None
    job = jobs.complete(tx, job_id, answer, now, token)
    if job is None:
        return None
    cid, aid = job.conversation_id, job.agent_id
    duration = int((now - (job.started_at or now)).total_seconds() * 1000)
    notice = _notice(answer)

    def told(reply_id: uuid.UUID, seq: int) -> list[events.Event]:
        told: list[events.Event] = [
            events.MessageCreated(
                conversation_id=cid,
                message_id=reply_id,
                seq=seq,
                role=Role.ASSISTANT,
                author_id=conv.author_id,
            ),
            events.AgentResponded(
                conversation_id=cid, agent_id=aid, job_id=job_id, message_id=reply_id, seq=seq
            ),
            events.JobCompleted(
                conversation_id=cid,
                agent_id=aid,
                job_id=job_id,
                attempts=job.attempts,
                duration_ms=duration,
            ),
        ]
        if notice is not None:
            told.append(
                events.Status(
                    conversation_id=cid,
                    category="info",
                    message=notice[1],
                    data={"reason": notice[0], "job_id": str(job_id), "message_id": str(reply_id)},
                )
            )
        return told

    # Another agent may answer the reply (an autonomous channel): it opens a window.
    pending = autonomous(conv.kind, conv.settings)
    written = writes.message(
        tx,
        conv,
        role=Role.ASSISTANT,
        content=answer["content"],
        author_id=conv.author_id,
        needs_dispatch=pending,
        now=now,
        events=told,
        reply=writes.Reply(job_id, aid, answer),
        cache=cache,
    )
    out = Effects(cid, events=written.events, release=[(aid, job_id)])
    # The slot this job frees goes to the conversation parked longest for the agent
    # (whatever the agent's busy flag said: another reply may have cleared it already).
    assert written.agent is not None
    if job.others_wait and written.agent.status not in HOLDING_AGENT_STATES:
        out.wake = parked.for_agent(tx, aid, 1, now, exclude=cid)
    if job.asked_at is not None:
        out.responded_after = (now - job.asked_at).total_seconds()
    # What waited starts now: new messages (a reply to answer, or posted meanwhile) are
    # dispatched first; else the next job of the conversation.
    if pending or conv.pending_since is not None:
        out.then = Then.DISPATCH
    elif job.waiting:
        out.then = Then.ADVANCE
    return out


#: the longest wait a provider's Retry-After may impose before the next attempt
RETRY_AFTER_CAP = 600.0


#: what a reply that is not a plain answer is marked with: (reason, what the notice says)
_NOTICES = {
    "refusal": "the model refused to answer",
    "content_filter": "the provider's content filter stopped the reply",
}


def _notice(answer: dict[str, Any]) -> tuple[str, str] | None:
    """The info notice a reply comes with, if it is not a whole, plain answer."""
    reason = answer.get("finish_reason")
    if reason in _NOTICES:
        return reason, _NOTICES[reason]
    if answer.get("truncated"):
        return "truncated", "the reply was cut short (token or length limit)"
    return None


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential with full jitter."""
    s = get_settings()
    cap = min(s.retry_backoff_max_seconds, s.retry_backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(cap / 2, cap)


def attempt_failed(
    tx: Tx,
    job_id: uuid.UUID,
    token: int,
    reason: str,
    *,
    retryable: bool,
    retry_after: float | None = None,
) -> Effects | None:
    """Record a failed attempt of claim `token`: wait and try again (without holding a
    worker; at least `retry_after` seconds when the provider said so), or fail the job
    visibly when attempts are spent or the error cannot heal. None if the claim is stale."""
    job = _lock_in_order(tx, job_id)
    if job is None or job.status != JobStatus.ACTIVE or job.lease_token != token:
        return None
    if not (retryable and job.attempts < job.max_attempts):
        return fail(tx, job_id, reason)
    wait = max(backoff(job.attempts), min(retry_after or 0.0, RETRY_AFTER_CAP))
    next_attempt_at = utcnow() + timedelta(seconds=wait)
    jobs.delay(tx, job_id, next_attempt_at, reason)
    retrying = events.JobRetrying(
        conversation_id=job.conversation_id,
        job_id=job_id,
        agent_id=job.agent_id,
        attempts=job.attempts,
        reason=reason,
        next_attempt_at=next_attempt_at,
    )
    # No slot is held while it waits: the agent may serve another conversation meanwhile.
    return Effects(
        job.conversation_id,
        events=outbox.insert_events(tx, [retrying]),
        release=[(job.agent_id, job_id)],
        wake_agent=job.agent_id,
        advance_in=wait,
    )


def fail(
    tx: Tx,
    job_id: uuid.UUID,
    reason: str,
    *,
    now: datetime | None = None,
    stop_call: bool = False,
) -> Effects | None:
    """Fail an unfinished job: its reason, a visible system message, `job.failed`; the
    conversation's next job may start. With `stop_call`, a running call of the job is
    stopped and its worker gives the agent's slot back when the call has ended; else the
    slot is given back at once (nothing of the job runs). None if the job has finished
    meanwhile."""
    now = now or utcnow()
    job = _lock_in_order(tx, job_id)
    if job is None or job.status not in (JobStatus.WAITING, JobStatus.ACTIVE, JobStatus.DELAYED):
        return None
    cid, aid = job.conversation_id, job.agent_id
    conv = conversations.lock(tx, cid)  # locked already: read its window
    agent = agents.lock(tx, aid)
    assert conv is not None  # a job's conversation outlives it (ON DELETE CASCADE)
    jobs.end(tx, job_id, JobStatus.FAILED, reason, now)
    agents.free_slot(tx, aid)
    msg_id, seq = messages.insert_message(
        tx,
        conv,
        role=Role.SYSTEM,
        content=f"{agent.name} could not respond: {reason}",
        author_id=None,
        needs_dispatch=False,
        now=now,
    )
    rows = outbox.insert_events(
        tx,
        [
            events.MessageCreated(
                conversation_id=cid, message_id=msg_id, seq=seq, role=Role.SYSTEM
            ),
            events.JobFailed(
                conversation_id=cid,
                job_id=job_id,
                agent_id=aid,
                attempts=job.attempts,
                reason=reason,
            ),
        ],
    )
    out = Effects(cid, events=rows, wake_agent=aid, then=Then.ADVANCE)
    if stop_call and job.status == JobStatus.ACTIVE:
        # Its worker stops the call, then gives the slot back (see effects.run_job).
        out.cancelled.append((job_id, job.lease_token))
    else:
        out.release.append((aid, job_id))
    return out


def _lock_in_order(tx: Tx, job_id: uuid.UUID) -> Record | None:
    """The job locked, its conversation locked first (the lock order); None if there is
    no such job."""
    where = jobs.route(tx, job_id)
    if where is None:
        return None
    conversations.lock(tx, where.conversation_id)
    return jobs.lock(tx, job_id)


def hold(
    tx: Tx,
    job_id: uuid.UUID,
    token: int,
    *,
    profile: str,
    wait: float,
    started: bool,
) -> Effects | None:
    """Hold claim `token` while the circuit of its model profile is open: the job is
    delayed `wait` seconds (until a probe may go), not failed, and no attempt is counted
    (one its call `started` is given back: the provider failed it, not the job); its
    agent slot is given back and the conversation is told why. None if the claim is
    stale."""
    until = utcnow() + timedelta(seconds=wait)
    reason = f"waiting for model profile {profile!r}: its provider is failing (circuit open)"
    job = jobs.hold(tx, job_id, token, until, reason, started=started)
    if job is None:
        return None
    waiting = events.Status(
        conversation_id=job.conversation_id,
        category="engine",
        message="waiting for the model provider to recover",
        data={
            "reason": "circuit_open",
            "profile": profile,
            "retry_in": round(wait, 1),
            "job_id": str(job_id),
        },
    )
    return Effects(
        job.conversation_id,
        events=outbox.insert_events(tx, [waiting]),
        release=[(job.agent_id, job_id)],
        wake_agent=job.agent_id,
        advance_in=wait,
    )
