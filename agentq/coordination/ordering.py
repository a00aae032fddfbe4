"""Ordered dispatch: turn due pending messages into jobs, and run a conversation's jobs
one at a time, in order.

Safety under at-least-once delivery rests on the database, not on Redis:

- `dispatch` and `advance` lock the conversation row, so two workers (or a task and its
  redelivered twin) handling one conversation take turns.
- A partial UNIQUE index lets a conversation have one open (active or delayed) job at most.
- Claiming a job bumps its `lease_token`, a fencing token: a worker that lost its lease
  (it was presumed dead) finds its token stale and its writes refused.
- A claimed job carries `lease_until`; past it the job is claimed again by whoever
  advances the conversation next (the reconciler, at the latest).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agentq import broker, events
from agentq.config import get_settings
from agentq.conversations import load_conversation
from agentq.coordination import debounce
from agentq.db.models import OPEN_JOB_STATES, Agent, Job, Message, MessageJob, utcnow
from agentq.db.session import transaction
from agentq.responders import conversation_agents, get_selector

log = logging.getLogger(__name__)


@dataclass
class DispatchOutcome:
    #: set when the window is not over yet: the timer must fire again then
    due: datetime | None = None
    jobs: list[uuid.UUID] = field(default_factory=list)
    #: messages consumed by this dispatch (covered by jobs, or needing none)
    handled: int = 0


def dispatch_due(conversation_id: uuid.UUID | str) -> DispatchOutcome:
    """If the conversation's pending messages are due, turn them into jobs (one a
    responder) with `message_jobs` links, and mark them handled. Idempotent: a second run
    finds nothing pending."""
    s = get_settings()
    with transaction() as session:
        conv = load_conversation(session, conversation_id, lock=True)
        if conv.last_seq <= conv.handled_seq:
            conv.pending_since = None
            return DispatchOutcome()
        due = debounce.due_at(conv)
        if due is not None and due > utcnow():
            return DispatchOutcome(due=due)
        batch = list(
            session.scalars(
                select(Message)
                .where(Message.conversation_id == conv.id, Message.seq > conv.handled_seq)
                .order_by(Message.seq)
            )
        )
        outcome = DispatchOutcome(handled=len(batch))
        live = [m for m in batch if m.deleted_at is None and m.role != "system"]
        own = {a.id: p.id for p, a in conversation_agents(session, conv)}
        for agent in get_selector(s.responder_selector)(session, conv, live):
            triggers = [m for m in live if m.author_id != own.get(agent.id)]
            if not triggers:
                continue
            job = Job(
                conversation_id=conv.id, agent_id=agent.id, trigger_message_id=triggers[0].id,
                status="waiting", max_attempts=s.max_attempts,
            )
            session.add(job)
            session.flush()
            session.add_all(
                MessageJob(
                    message_id=m.id, job_id=job.id, agent_id=agent.id, conversation_id=conv.id,
                    status="trigger",
                )
                for m in triggers
            )
            outcome.jobs.append(job.id)
        conv.handled_seq = conv.last_seq
        conv.pending_since = None
        return outcome


@dataclass
class Claim:
    job_id: uuid.UUID
    conversation_id: uuid.UUID
    token: int
    attempt: int


def advance(conversation_id: uuid.UUID | str) -> Claim | None:
    """Start the conversation's next job if none is running, and send it to the LLM pool.

    Re-claims a job whose lease ran out (its worker is presumed dead) or whose retry delay
    is over. Returns the claim, or None when there is nothing to start now.
    """
    s = get_settings()
    now = utcnow()
    with transaction() as session:
        conv = load_conversation(session, conversation_id, lock=True)
        job = session.scalar(
            select(Job).where(Job.conversation_id == conv.id, Job.status.in_(OPEN_JOB_STATES))
        )
        if job is not None:
            if job.status == "active" and job.lease_until and job.lease_until > now:
                return None
            if job.status == "delayed" and job.next_attempt_at and job.next_attempt_at > now:
                return None
            if job.status == "active":
                log.warning("job %s lease expired; claiming it again", job.id)
        else:
            job = session.scalar(
                select(Job)
                .where(Job.conversation_id == conv.id, Job.status == "waiting")
                .order_by(Job.created_at, Job.id)
                .limit(1)
            )
            if job is None:
                return None
        claim = _claim(session, job, now, s.job_lease_seconds)
        row = events.record(
            session,
            events.AgentResponding(
                conversation_id=conv.id, agent_id=job.agent_id, job_id=job.id,
                attempt=job.attempts,
            ),
        )
    events.publish([row])
    broker.send(broker.RUN_JOB, claim.job_id, claim.token)
    return claim


def _claim(session: Session, job: Job, now: datetime, lease_seconds: float) -> Claim:
    job.status = "active"
    job.attempts += 1
    job.lease_token += 1
    job.lease_until = now + timedelta(seconds=lease_seconds)
    job.next_attempt_at = None
    job.started_at = job.started_at or now
    session.execute(
        update(Agent).where(Agent.id == job.agent_id, Agent.status == "active").values(status="busy")
    )
    session.flush()
    return Claim(job.id, job.conversation_id, job.lease_token, job.attempts)


def after_dispatch(conversation_id: uuid.UUID | str, outcome: DispatchOutcome) -> None:
    """What the dispatch task does once the transaction committed."""
    if outcome.due is not None:
        debounce.arm(conversation_id, outcome.due, force=True)
        return
    # Forget the timer, then look again: a message committed meanwhile found the timer
    # still armed and relied on us; one committed after this sees no timer and arms its own.
    debounce.disarm(conversation_id)
    again = dispatch_due(conversation_id)
    if again.due is not None:
        debounce.arm(conversation_id, again.due)
    advance(conversation_id)
