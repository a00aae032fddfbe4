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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from agentq import events
from agentq.config import Settings, get_settings
from agentq.errors import ConversationNotFound
from agentq.ops import metrics
from agentq.ops.conversations import conversation_uuid
from agentq.runtime import broker, limits
from agentq.runtime.redis import get_redis, key
from agentq.store import tables
from agentq.store.models import (
    OPEN_JOB_STATES,
    Agent,
    Job,
    Message,
    MessageJob,
    utcnow,
)
from agentq.store.session import ROW_LOCK, transaction
from agentq.turn import debounce
from agentq.turn.responders import (
    ConversationView,
    MessageView,
    conversation_agents,
    get_selector,
)

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
    cid = conversation_uuid(conversation_id)
    with begun.undone_on_error(), transaction() as session:
        conn = session.connection()
        conv = conn.execute(_LOCK_FOR_DISPATCH, {"conv_id": cid}).first()
        if conv is None:
            raise ConversationNotFound(conversation_id)
        if conv.last_seq <= conv.handled_seq:
            if conv.pending_since is not None:
                conn.execute(_MARK_HANDLED, {"conv_id": cid, "handled": conv.handled_seq})
            return outcome
        due = debounce.due_at(conv)
        if due is not None and due > utcnow():
            outcome.due = due
            return outcome
        batch = conn.execute(_PENDING, {"conv_id": cid, "after": conv.handled_seq}).all()
        outcome.handled = len(batch)
        live = [m for m in batch if m.deleted_at is None and m.role != "system"]
        conn.execute(_MARK_HANDLED, {"conv_id": cid, "handled": conv.last_seq})
        if live:
            _plan_jobs(session, conv, live, outcome, s)
        # After an interrupt the cancelled jobs hold their agents' slots until this
        # commits; the next job starts after that (below).
        if start and outcome.jobs and not outcome.cancelled:
            _start_next(session, cid, s, begun)
        metrics.debounced(len(live))
    events.publish(outcome.events)
    for job_id, agent_id in outcome.cancelled:
        cancel_running(job_id, agent_id)
    _after_start(conversation_id, begun)
    if start and outcome.cancelled:
        advance(conversation_id)
    return outcome


# Dispatch's statements, built once (it runs for every turn).
_C, _M = tables.conversations, tables.messages
_LOCK_FOR_DISPATCH = (
    select(
        _C.c.id,
        _C.c.kind,
        _C.c.settings,
        _C.c.last_seq,
        _C.c.handled_seq,
        _C.c.pending_since,
        _C.c.last_message_at,
    )
    .where(_C.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True)
)
_MESSAGE_COLUMNS = (_M.c.id, _M.c.seq, _M.c.author_id, _M.c.role, _M.c.content, _M.c.deleted_at)
_PENDING = (
    select(*_MESSAGE_COLUMNS)
    .where(_M.c.conversation_id == bindparam("conv_id"), _M.c.seq > bindparam("after"))
    .order_by(_M.c.seq)
)
_MARK_HANDLED = (
    update(_C)
    .where(_C.c.id == bindparam("conv_id"))
    .values(handled_seq=bindparam("handled"), pending_since=None)
)
#: the messages an unfinished job answers (carried over by an interrupt)
_TRIGGERS = (
    select(*_MESSAGE_COLUMNS)
    .join(tables.message_jobs, tables.message_jobs.c.message_id == _M.c.id)
    .where(
        tables.message_jobs.c.job_id == bindparam("job_id"),
        tables.message_jobs.c.status == "trigger",
    )
)
_INSERT_JOB = insert(tables.jobs)
_INSERT_LINK = insert(tables.message_jobs)


def _plan_jobs(
    session: Session,
    conv: ConversationView,
    live: Sequence[MessageView],
    outcome: DispatchOutcome,
    s: Settings,
) -> None:
    settings = conv.settings or {}
    human = any(m.role == "user" for m in live)
    if not human:
        stop = _loop_bound(session, conv, s)
        if stop:
            outcome.events.append(
                events.record(
                    session,
                    events.Status(
                        conversation_id=conv.id,
                        category="info",
                        message=stop,
                        data={"reason": "loop_bound"},
                    ),
                )
            )
            return
    policy = settings.get("double_texting", "enqueue")
    unfinished = (
        list(
            session.scalars(
                select(Job)
                .where(
                    Job.conversation_id == conv.id, Job.status.in_(("waiting", *OPEN_JOB_STATES))
                )
                .order_by(Job.created_at)
            )
        )
        if human and policy != "enqueue"
        else []
    )
    if unfinished and policy == "reject":
        outcome.events.append(
            events.record(
                session,
                events.Status(
                    conversation_id=conv.id,
                    category="info",
                    message=f"{len(live)} message(s) not answered: an answer is still in progress "
                    "(double-texting: reject)",
                    data={"reason": "double_texting_reject", "seqs": [m.seq for m in live]},
                ),
            )
        )
        return
    if unfinished:  # interrupt or rollback
        carried: dict[uuid.UUID, MessageView] = {}
        for job in unfinished:
            for m in session.connection().execute(_TRIGGERS, {"job_id": job.id}):
                carried[m.id] = m
            job.status = "cancelled"
            job.finished_at = utcnow()
            job.lease_until = None
            job.failure_reason = f"interrupted by a newer message ({policy})"
            if policy == "rollback":
                session.execute(delete(MessageJob).where(MessageJob.job_id == job.id))
            # Its slot is freed after commit; the agent is no longer at its limit.
            session.execute(
                update(Agent)
                .where(Agent.id == job.agent_id, Agent.status == "busy")
                .values(status="active")
            )
            outcome.cancelled.append((job.id, job.agent_id))
        session.flush()
        live = sorted({**carried, **{m.id: m for m in live}}.values(), key=lambda m: m.seq)
    own = {a.id: p.id for p, a in conversation_agents(session, conv)}
    for agent in get_selector(s.responder_selector)(session, conv, live):
        triggers = [m for m in live if m.author_id != own.get(agent.id)]
        if not triggers:
            continue
        job_id, now = uuid.uuid4(), utcnow()
        conn = session.connection()
        conn.execute(
            _INSERT_JOB,
            {
                "id": job_id,
                "conversation_id": conv.id,
                "agent_id": agent.id,
                "trigger_message_id": triggers[0].id,
                "status": "waiting",
                "max_attempts": s.max_attempts,
                "created_at": now,
                "updated_at": now,
            },
        )
        conn.execute(
            _INSERT_LINK,
            [
                {
                    "id": uuid.uuid4(),
                    "message_id": m.id,
                    "job_id": job_id,
                    "agent_id": agent.id,
                    "conversation_id": conv.id,
                    "status": "trigger",
                    "created_at": now,
                }
                for m in triggers
            ],
        )
        outcome.jobs.append(job_id)


def _loop_bound(session: Session, conv: ConversationView, s: Settings) -> str | None:
    """Why agents must stop answering each other here, or None while within bounds."""
    settings = conv.settings or {}
    hop_limit = int(settings.get("hop_limit", s.hop_limit))
    budget = int(settings.get("turn_budget", s.turn_budget))
    last_human = (
        session.scalar(
            select(func.max(Message.seq)).where(
                Message.conversation_id == conv.id, Message.role == "user"
            )
        )
        or 0
    )
    hops = (
        session.scalar(
            select(func.count())
            .select_from(Message)
            .where(
                Message.conversation_id == conv.id,
                Message.role == "assistant",
                Message.seq > last_human,
            )
        )
        or 0
    )
    if hops >= hop_limit:
        return f"agents stopped after {hops} turns without a human message (hop limit {hop_limit})"
    if budget:
        turns = (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == conv.id, Message.role == "assistant")
            )
            or 0
        )
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
    events: Sequence[events.Published] = ()
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
    cid = conversation_uuid(conversation_id)
    begun = _Start()
    with begun.undone_on_error(), transaction() as session:
        if session.connection().execute(_LOCK_CONVERSATION, {"conv_id": cid}).first() is None:
            raise ConversationNotFound(conversation_id)
        _start_next(session, cid, get_settings(), begun)
    _after_start(cid, begun)
    return begun.claim


# `_start_next`'s statements, built once (it runs for every turn).
_J, _A = tables.jobs, tables.agents
_LOCK_CONVERSATION = (
    select(tables.conversations.c.id)
    .where(tables.conversations.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True)
)
#: the open job if there is one (at most one: a unique index), else the oldest waiting
_NEXT_JOB = (
    select(
        _J.c.id,
        _J.c.status,
        _J.c.agent_id,
        _J.c.attempts,
        _J.c.max_attempts,
        _J.c.lease_until,
        _J.c.next_attempt_at,
        _J.c.created_at,
    )
    .where(
        _J.c.conversation_id == bindparam("conv_id"), _J.c.status.in_(("waiting", *OPEN_JOB_STATES))
    )
    .order_by(_J.c.status == "waiting", _J.c.created_at, _J.c.id)
    .limit(1)
)
_LOCK_AGENT = (
    select(_A.c.status, _A.c.name, _A.c.max_concurrent_jobs, _A.c.rate_limit_per_minute)
    .where(_A.c.id == bindparam("agent_id"))
    .with_for_update(key_share=True)
)
_CLAIM = (
    update(_J)
    .where(_J.c.id == bindparam("job_id"))
    .values(
        status="active",
        attempts=_J.c.attempts + 1,
        lease_token=_J.c.lease_token + 1,
        lease_until=bindparam("lease_until"),
        next_attempt_at=None,
        started_at=func.coalesce(_J.c.started_at, bindparam("now", type_=_J.c.started_at.type)),
    )
    .returning(_J.c.lease_token, _J.c.attempts)
)
_AGENT_BUSY = (
    update(_A)
    .where(_A.c.id == bindparam("agent_id"), _A.c.status == "active")
    .values(status="busy")
)


def _start_next(session: Session, conv_id: uuid.UUID, s: Settings, out: _Start) -> None:
    """`advance`'s work, in the caller's transaction (which holds the conversation
    locked); what it did goes into `out`."""
    conn = session.connection()
    now = utcnow()
    job = conn.execute(_NEXT_JOB, {"conv_id": conv_id}).first()
    if job is None:
        return
    if job.status == "active" and job.lease_until and job.lease_until > now:
        return
    if job.status == "delayed" and job.next_attempt_at and job.next_attempt_at > now:
        return
    if job.status == "active":
        log.warning("job %s lease expired; claiming it again", job.id)
    agent = conn.execute(_LOCK_AGENT, {"agent_id": job.agent_id}).one()
    if agent.status == "paused":
        return
    if agent.status == "inactive" or (job.status == "active" and job.attempts >= job.max_attempts):
        from agentq.turn.finish import fail  # jobs builds on this module

        reason = (
            f"agent {agent.name} is stopped"
            if agent.status == "inactive"
            else "its worker was lost during the last attempt"
        )
        out.events = fail(
            session, session.get_one(Job, job.id, with_for_update=ROW_LOCK), reason, now
        )
        out.failed = (job.agent_id, job.id)
        return
    verdict = limits.acquire(
        job.agent_id,
        job.id,
        max_running=agent.max_concurrent_jobs,
        per_minute=agent.rate_limit_per_minute,
    )
    if not verdict.ok:
        if verdict.retry_in is None and agent.status == "active":
            conn.execute(_AGENT_BUSY, {"agent_id": job.agent_id})  # at its concurrency limit
        out.retry_in = verdict.retry_in if verdict.retry_in is not None else LIMIT_POLL_SECONDS
        return
    out.taken = (job.agent_id, job.id)
    # The start is when the slot was taken, not when this transaction began.
    now = utcnow()
    claimed = conn.execute(
        _CLAIM,
        {"job_id": job.id, "now": now, "lease_until": now + timedelta(seconds=s.job_lease_seconds)},
    ).one()
    if agent.status == "active" and verdict.running >= agent.max_concurrent_jobs:
        conn.execute(_AGENT_BUSY, {"agent_id": job.agent_id})
    if claimed.attempts == 1:
        metrics.queue_waited(now - job.created_at)
    out.claim = Claim(job.id, conv_id, claimed.lease_token, claimed.attempts)
    out.events = events.insert(
        conn,
        [
            events.AgentResponding(
                conversation_id=conv_id,
                agent_id=job.agent_id,
                job_id=job.id,
                attempt=claimed.attempts,
            )
        ],
    )


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


def wake_agent(agent_id: uuid.UUID, *, exclude: uuid.UUID | None = None) -> int:
    """Advance conversations whose next job waits for this agent (a slot freed, or it
    was resumed). Returns how many were woken."""
    with transaction() as session:
        agent = session.get(Agent, agent_id)
        conv_ids = waiting_for(session, agent, exclude=exclude) if agent else []
    for conv_id in conv_ids:
        broker.send(broker.ADVANCE, conv_id)
    return len(conv_ids)


def waiting_for(
    session: Session, agent: Agent, *, exclude: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Conversations whose next job waits for `agent`, oldest first, as many as it may run
    at once; none while it is paused or stopped."""
    if agent.status in ("paused", "inactive"):
        return []
    return waiting_for_agent(
        session.connection(), agent.id, agent.max_concurrent_jobs, exclude=exclude
    )


def waiting_for_agent(
    conn: Connection, agent_id: uuid.UUID, limit: int, *, exclude: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """`waiting_for` an agent known to take jobs, by id, at most `limit`."""
    J = tables.jobs
    waiting = select(J.c.conversation_id).where(J.c.agent_id == agent_id, J.c.status == "waiting")
    if exclude is not None:
        waiting = waiting.where(J.c.conversation_id != exclude)
    return list(
        conn.execute(
            waiting.group_by(J.c.conversation_id).order_by(func.min(J.c.created_at)).limit(limit)
        ).scalars()
    )


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
