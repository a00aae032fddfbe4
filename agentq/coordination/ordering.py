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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.orm import Session

from agentq import broker, events, metrics
from agentq.config import Settings, get_settings
from agentq.conversations import load_conversation
from agentq.coordination import debounce, limits
from agentq.db import tables
from agentq.db.models import (
    OPEN_JOB_STATES,
    Agent,
    Conversation,
    Job,
    Message,
    MessageJob,
    utcnow,
)
from agentq.db.session import ROW_LOCK, transaction
from agentq.redis_conn import get_redis, key
from agentq.responders import conversation_agents, get_selector

log = logging.getLogger(__name__)

#: how often a conversation whose agent is at its concurrency limit looks again, at most
#: (a freed slot wakes it at once; this covers a wake-up lost with Redis)
LIMIT_POLL_SECONDS = 2.0
#: how long a cancel signal waits for the worker running the job to see it
CANCEL_TTL_SECONDS = 600


@dataclass
class DispatchOutcome:
    #: set when the window is not over yet: the timer must fire again then
    due: datetime | None = None
    jobs: list[uuid.UUID] = field(default_factory=list)
    #: messages consumed by this dispatch (covered by jobs, or needing none)
    handled: int = 0
    #: jobs cancelled by an `interrupt` or `rollback`, with their agents
    cancelled: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    events: list[events.EventRow] = field(default_factory=list)


def dispatch_due(conversation_id: uuid.UUID | str, *, start: bool = False) -> DispatchOutcome:
    """If the conversation's pending messages are due, turn them into jobs (one a
    responder) with `message_jobs` links, and mark them handled. Idempotent: a second run
    finds nothing pending. With `start`, the conversation's next job is claimed in the
    same transaction (as `advance` would) and sent to the LLM pool.

    While a job of the conversation is unfinished, the conversation's `double_texting`
    setting decides: `enqueue` (a new job waits its turn), `reject` (no job; an info
    status says so), `interrupt` (cancel the unfinished jobs; one new job covers their
    messages and the new ones) or `rollback` (as interrupt, and the cancelled jobs keep
    no links).
    """
    s = get_settings()
    outcome = DispatchOutcome()
    begun = _Start()
    with begun.undone_on_error(), transaction() as session:
        conv = load_conversation(session, conversation_id, lock=True)
        if conv.last_seq <= conv.handled_seq:
            conv.pending_since = None
            return outcome
        due = debounce.due_at(conv)
        if due is not None and due > utcnow():
            outcome.due = due
            return outcome
        batch = list(
            session.scalars(
                select(Message)
                .where(Message.conversation_id == conv.id, Message.seq > conv.handled_seq)
                .order_by(Message.seq)
            )
        )
        outcome.handled = len(batch)
        live = [m for m in batch if m.deleted_at is None and m.role != "system"]
        conv.handled_seq = conv.last_seq
        conv.pending_since = None
        if live:
            _plan_jobs(session, conv, live, outcome, s)
        # After an interrupt the cancelled jobs hold their agents' slots until this
        # commits; the next job starts after that (below).
        if start and outcome.jobs and not outcome.cancelled:
            _start_next(session, conv, s, begun)
        metrics.debounced(len(live))
    events.publish(outcome.events)
    for job_id, agent_id in outcome.cancelled:
        cancel_running(job_id, agent_id)
    _after_start(conversation_id, begun)
    if start and outcome.cancelled:
        advance(conversation_id)
    return outcome


def _plan_jobs(
    session: Session, conv: Conversation, live: list[Message], outcome: DispatchOutcome,
    s: Settings,
) -> None:
    settings = conv.settings or {}
    human = any(m.role == "user" for m in live)
    if not human:
        stop = _loop_bound(session, conv, s)
        if stop:
            outcome.events.append(events.record(session, events.Status(
                conversation_id=conv.id, category="info", message=stop,
                data={"reason": "loop_bound"})))
            return
    policy = settings.get("double_texting", "enqueue")
    unfinished = list(session.scalars(
        select(Job).where(Job.conversation_id == conv.id,
                          Job.status.in_(("waiting", *OPEN_JOB_STATES)))
        .order_by(Job.created_at)
    )) if human and policy != "enqueue" else []
    if unfinished and policy == "reject":
        outcome.events.append(events.record(session, events.Status(
            conversation_id=conv.id, category="info",
            message=f"{len(live)} message(s) not answered: an answer is still in progress "
                    "(double-texting: reject)",
            data={"reason": "double_texting_reject", "seqs": [m.seq for m in live]})))
        return
    if unfinished:  # interrupt or rollback
        carried: dict[uuid.UUID, Message] = {}
        for job in unfinished:
            for m in session.scalars(
                select(Message).join(MessageJob, MessageJob.message_id == Message.id)
                .where(MessageJob.job_id == job.id, MessageJob.status == "trigger")
            ):
                carried[m.id] = m
            job.status = "cancelled"
            job.finished_at = utcnow()
            job.lease_until = None
            job.failure_reason = f"interrupted by a newer message ({policy})"
            if policy == "rollback":
                session.execute(delete(MessageJob).where(MessageJob.job_id == job.id))
            # Its slot is freed after commit; the agent is no longer at its limit.
            session.execute(update(Agent).where(Agent.id == job.agent_id, Agent.status == "busy")
                            .values(status="active"))
            outcome.cancelled.append((job.id, job.agent_id))
        session.flush()
        live = sorted({**carried, **{m.id: m for m in live}}.values(), key=lambda m: m.seq)
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


def _loop_bound(session: Session, conv: Conversation, s: Settings) -> str | None:
    """Why agents must stop answering each other here, or None while within bounds."""
    settings = conv.settings or {}
    hop_limit = int(settings.get("hop_limit", s.hop_limit))
    budget = int(settings.get("turn_budget", s.turn_budget))
    last_human = session.scalar(
        select(func.max(Message.seq)).where(Message.conversation_id == conv.id,
                                            Message.role == "user")
    ) or 0
    hops = session.scalar(
        select(func.count()).select_from(Message).where(
            Message.conversation_id == conv.id, Message.role == "assistant",
            Message.seq > last_human)
    ) or 0
    if hops >= hop_limit:
        return f"agents stopped after {hops} turns without a human message (hop limit {hop_limit})"
    if budget:
        turns = session.scalar(
            select(func.count()).select_from(Message).where(
                Message.conversation_id == conv.id, Message.role == "assistant")
        ) or 0
        if turns >= budget:
            return f"agents stopped: the conversation's turn budget of {budget} is spent"
    return None


def cancel_running(job_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    """Tell the worker running `job_id` to drop it now, and free its agent slot."""
    try:
        get_redis().set(key("cancel", job_id), "1", ex=CANCEL_TTL_SECONDS)
        limits.release(agent_id, job_id)
    except Exception as exc:  # noqa: BLE001 - the job is cancelled in the DB regardless
        log.warning("cancel signal for job %s not sent: %s", job_id, type(exc).__name__)


def is_cancelled(job_id: uuid.UUID) -> bool:
    return bool(get_redis().exists(key("cancel", job_id)))


@dataclass
class Claim:
    job_id: uuid.UUID
    conversation_id: uuid.UUID
    token: int
    attempt: int


@dataclass
class _Start:
    """What starting a conversation's next job did inside a transaction, for after it."""

    claim: Claim | None = None
    events: list[events.EventRow] = field(default_factory=list)
    #: over a limit: look again in this many seconds
    retry_in: float | None = None
    #: a job failed instead of starting (agent, job): its slot is freed, the next may start
    failed: tuple[uuid.UUID, uuid.UUID] | None = None
    #: the agent slot taken, given back if the transaction does not commit
    taken: tuple[uuid.UUID, uuid.UUID] | None = None

    @contextmanager
    def undone_on_error(self) -> Iterator[None]:
        """Around the transaction (commit included): a slot taken in a transaction that
        does not commit is given back."""
        try:
            yield
        except BaseException:
            if self.taken is not None:
                limits.release(*self.taken)
            raise


def advance(conversation_id: uuid.UUID | str) -> Claim | None:
    """Start the conversation's next job if none is running, and send it to the LLM pool.

    Re-claims a job whose lease ran out (its worker is presumed dead) or whose retry delay
    is over. A job of a paused agent, or of one at its limits, waits (the conversation
    with it): resuming, a freed slot or the rate limit's countdown advances it again.
    Returns the claim, or None when there is nothing to start now.
    """
    begun = _Start()
    with begun.undone_on_error(), transaction() as session:
        conv = load_conversation(session, conversation_id, lock=True)
        _start_next(session, conv, get_settings(), begun)
    _after_start(conversation_id, begun)
    return begun.claim


def _start_next(session: Session, conv: Conversation, s: Settings, out: _Start) -> None:
    """`advance`'s work, in the caller's transaction (which holds `conv` locked); what it
    did goes into `out`."""
    now = utcnow()
    # The open job if there is one (at most one: a unique index), else the oldest waiting.
    job = session.scalar(
        select(Job)
        .where(Job.conversation_id == conv.id, Job.status.in_(("waiting", *OPEN_JOB_STATES)))
        .order_by(Job.status == "waiting", Job.created_at, Job.id)
        .limit(1)
    )
    if job is None:
        return
    if job.status == "active" and job.lease_until and job.lease_until > now:
        return
    if job.status == "delayed" and job.next_attempt_at and job.next_attempt_at > now:
        return
    if job.status == "active":
        log.warning("job %s lease expired; claiming it again", job.id)
    agent = session.get_one(Agent, job.agent_id, with_for_update=ROW_LOCK)
    if agent.status == "paused":
        return
    if agent.status == "inactive" or (job.status == "active" and job.attempts >= job.max_attempts):
        from agentq.jobs import fail  # jobs builds on this module

        reason = (f"agent {agent.name} is stopped" if agent.status == "inactive"
                  else "its worker was lost during the last attempt")
        out.events = fail(session, job, reason, now)
        out.failed = (agent.id, job.id)
        return
    verdict = limits.acquire(agent.id, job.id, max_running=agent.max_concurrent_jobs,
                             per_minute=agent.rate_limit_per_minute)
    if not verdict.ok:
        if verdict.retry_in is None and agent.status == "active":
            agent.status = "busy"  # at its concurrency limit
        out.retry_in = verdict.retry_in if verdict.retry_in is not None else LIMIT_POLL_SECONDS
        return
    out.taken = (agent.id, job.id)
    # The start is when the slot was taken, not when this transaction began.
    out.claim = _claim(session, job, agent, utcnow(), s.job_lease_seconds, verdict.running)
    out.events = [events.record(session, events.AgentResponding(
        conversation_id=conv.id, agent_id=job.agent_id, job_id=job.id, attempt=job.attempts,
    ))]


def _after_start(conversation_id: uuid.UUID | str, begun: _Start) -> None:
    """Once the transaction that started (or failed to start) a job committed."""
    events.publish(begun.events)
    if begun.claim is not None:
        broker.send(broker.RUN_JOB, begun.claim.job_id, begun.claim.token)
    elif begun.retry_in is not None:
        # Over a limit: look again when the rate allows (a freed slot wakes us sooner).
        broker.send(broker.ADVANCE, conversation_id, countdown=begun.retry_in)
    elif begun.failed is not None:
        limits.release(*begun.failed)  # a job whose worker was lost still held its slot
        advance(conversation_id)  # the failed job made way for the next one


def _claim(
    session: Session, job: Job, agent: Agent, now: datetime, lease_seconds: float, running: int
) -> Claim:
    job.status = "active"
    job.attempts += 1
    job.lease_token += 1
    job.lease_until = now + timedelta(seconds=lease_seconds)
    job.next_attempt_at = None
    job.started_at = job.started_at or now
    if agent.status == "active" and running >= agent.max_concurrent_jobs:
        agent.status = "busy"
    session.flush()
    metrics.job_claimed(job, now)
    return Claim(job.id, job.conversation_id, job.lease_token, job.attempts)


def wake_agent(agent_id: uuid.UUID, *, exclude: uuid.UUID | None = None) -> int:
    """Advance conversations whose next job waits for this agent (a slot freed, or it
    was resumed). Returns how many were woken."""
    with transaction() as session:
        agent = session.get(Agent, agent_id)
        conv_ids = waiting_for(session, agent, exclude=exclude) if agent else []
    for conv_id in conv_ids:
        broker.send(broker.ADVANCE, conv_id)
    return len(conv_ids)


def waiting_for(session: Session, agent: Agent, *, exclude: uuid.UUID | None = None
                ) -> list[uuid.UUID]:
    """Conversations whose next job waits for `agent`, oldest first, as many as it may run
    at once; none while it is paused or stopped."""
    if agent.status in ("paused", "inactive"):
        return []
    return waiting_for_agent(session.connection(), agent.id, agent.max_concurrent_jobs,
                             exclude=exclude)


def waiting_for_agent(conn: Connection, agent_id: uuid.UUID, limit: int, *,
                      exclude: uuid.UUID | None = None) -> list[uuid.UUID]:
    """`waiting_for` an agent known to take jobs, by id, at most `limit`."""
    J = tables.jobs
    waiting = select(J.c.conversation_id).where(J.c.agent_id == agent_id, J.c.status == "waiting")
    if exclude is not None:
        waiting = waiting.where(J.c.conversation_id != exclude)
    return list(conn.execute(
        waiting.group_by(J.c.conversation_id).order_by(func.min(J.c.created_at)).limit(limit)
    ).scalars())


def fire(conversation_id: uuid.UUID | str) -> DispatchOutcome:
    """The debounce timer fired: dispatch what is due and start the next job, in one
    transaction; re-arm if the window is not over yet.

    The timer is forgotten BEFORE the database is read: a message committed before that
    found the timer armed and relied on it, and this read sees the message; one committed
    after it finds no timer and arms its own (so re-arming here never forces).
    """
    debounce.disarm(conversation_id)
    outcome = dispatch_due(conversation_id, start=True)
    if outcome.due is not None:
        debounce.arm(conversation_id, outcome.due)
    elif not outcome.jobs:
        advance(conversation_id)  # nothing new: a job may still be waiting its turn
    return outcome
