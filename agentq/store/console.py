"""Reads of the operator console (`agentq.api.console`): conversations with where each
stands, a conversation's timeline, agents with their waiting work, failed jobs, recent
outcomes per model profile; and the bulk seeding of `ops/scripts/console_scale.py`.

Every list pages by keyset (the newest first, continued after the last row shown), so a
page costs the same at row 100,000 as at row 1. Nothing here returns a key; message
bodies only where the console shows a conversation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, or_, select
from sqlalchemy.orm import aliased

from agentq.clock import utcnow
from agentq.states import UNFINISHED_JOB_STATES, JobStatus, LinkStatus
from agentq.store import parked, tables
from agentq.store.models import (
    Agent,
    Conversation,
    Event,
    Job,
    Message,
    MessageJob,
    Participant,
    Tenant,
)
from agentq.store.session import reader, transaction

#: the states a conversation is shown in, in the order they win
STATES = ("running", "waiting", "debouncing", "failed", "idle")
#: events of a job's attempts shown on the timeline
ATTEMPT_EVENTS = ("agent.responding", "job.retrying", "job.failed", "job.completed")


@dataclass(frozen=True)
class ConversationRow:
    id: uuid.UUID
    title: str | None
    kind: str
    tenant: str | None
    created_at: datetime
    last_message_at: datetime | None
    last_seq: int
    handled_seq: int
    pending_since: datetime | None
    settings: dict[str, Any]
    #: the job that says where the conversation stands: its first unfinished one, else
    #: its newest (None: no job yet)
    job: JobRow | None = None


@dataclass(frozen=True)
class JobRow:
    id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    agent: str
    agent_status: str
    agent_max_concurrent: int
    agent_rate_per_minute: int
    agent_model_config: dict[str, Any]
    tenant_id: uuid.UUID | None
    status: str
    attempts: int
    max_attempts: int
    failure_reason: str | None
    lease_token: int
    lease_until: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    tenant: str | None = None


@dataclass
class TimelineJob:
    job: JobRow
    trigger_seqs: list[int] = field(default_factory=list)
    first_trigger_at: datetime | None = None
    reply_seq: int | None = None
    reply_at: datetime | None = None
    #: (type, created_at, payload) of the job's attempt events, oldest first
    history: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class MessageRow:
    id: uuid.UUID
    seq: int
    role: str
    author: str | None
    author_kind: str | None
    content: str
    created_at: datetime
    reply_to_job_id: uuid.UUID | None
    deleted: bool


@dataclass(frozen=True)
class Timeline:
    conversation: ConversationRow
    messages: list[MessageRow]
    jobs: list[TimelineJob]
    #: the seq below which older messages exist (None: all shown)
    older_than: int | None


@dataclass(frozen=True)
class AgentRow:
    id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    tenant: str
    status: str
    max_concurrent_jobs: int
    rate_limit_per_minute: int
    model_config: dict[str, Any]
    total_responses: int
    last_response_at: datetime | None
    active_jobs: int
    waiting_jobs: int
    #: conversations that could start their next job now but for this agent's limits
    parked: list[uuid.UUID]


@dataclass(frozen=True)
class ProfileOutcomes:
    completed: int = 0
    failed: int = 0
    retried: int = 0


_JOB_COLUMNS = (
    Job.id,
    Job.conversation_id,
    Job.agent_id,
    Agent.name,
    Agent.status,
    Agent.max_concurrent_jobs,
    Agent.rate_limit_per_minute,
    Agent.model_config_,
    Agent.tenant_id,
    Job.status,
    Job.attempts,
    Job.max_attempts,
    Job.failure_reason,
    Job.lease_token,
    Job.lease_until,
    Job.next_attempt_at,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
    Job.result,
)


def _job(row: Any, tenant: str | None = None) -> JobRow:
    made: JobRow = _MAKE_JOB(*row[: len(_JOB_COLUMNS)], tenant=tenant)
    return made


#: JobRow by position (a row's columns in _JOB_COLUMNS order)
_MAKE_JOB: Any = JobRow


def _conv(row: Any, job: JobRow | None = None) -> ConversationRow:
    c, tenant = row
    return ConversationRow(
        c.id,
        c.title,
        c.kind,
        tenant,
        c.created_at,
        c.last_message_at,
        c.last_seq,
        c.handled_seq,
        c.pending_since,
        dict(c.settings or {}),
        job,
    )


def _state_filter(state: str) -> Any:
    """The SQL condition of a conversation being shown in `state` (see STATES)."""
    j = aliased(Job)
    active = exists().where(j.conversation_id == Conversation.id, j.status == JobStatus.ACTIVE)
    w = aliased(Job)
    waiting = exists().where(
        w.conversation_id == Conversation.id,
        w.status.in_((JobStatus.WAITING, JobStatus.DELAYED)),
    )
    pending = Conversation.handled_seq < Conversation.last_seq
    last = aliased(Job)
    newest = (
        select(last.status)
        .where(last.conversation_id == Conversation.id)
        .order_by(last.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    failed = newest == JobStatus.FAILED
    conditions = {
        "running": active,
        "waiting": and_(~active, waiting),
        "debouncing": and_(~active, ~waiting, pending),
        "failed": and_(~active, ~waiting, ~pending, failed),
        "idle": and_(~active, ~waiting, ~pending, or_(newest.is_(None), ~failed)),
    }
    return conditions[state]


def conversations(
    *,
    tenant_id: uuid.UUID | None,
    agent_id: uuid.UUID | None = None,
    state: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[ConversationRow]:
    """One page of conversations, newest first (of one tenant, or all when `tenant_id`
    is None), optionally with `agent_id` taking part and in `state`; continued after the
    (created_at, id) `after` of the last row of the page before. Each row comes with the
    job that says where it stands."""
    q = select(Conversation, Tenant.name).outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
    if tenant_id is not None:
        q = q.where(Conversation.tenant_id == tenant_id)
    if agent_id is not None:
        q = q.where(
            exists().where(
                Participant.conversation_id == Conversation.id, Participant.agent_id == agent_id
            )
        )
    if state is not None:
        q = q.where(_state_filter(state))
    if after is not None:
        at, last_id = after
        q = q.where(
            or_(
                Conversation.created_at < at,
                and_(Conversation.created_at == at, Conversation.id < last_id),
            )
        )
    q = q.order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit)
    with reader() as s:
        rows = s.execute(q).all()
        jobs = _current_jobs(s, [r[0].id for r in rows])
    return [_conv(r, jobs.get(r[0].id)) for r in rows]


def _current_jobs(s: Any, conv_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobRow]:
    """Per conversation, its first unfinished job, else its newest."""
    if not conv_ids:
        return {}
    ranked = (
        select(
            *_JOB_COLUMNS,
            func.row_number()
            .over(
                partition_by=Job.conversation_id,
                order_by=(
                    _UNFINISHED_FIRST,
                    _OLDEST_IF_UNFINISHED,
                    Job.created_at.desc(),
                ),
            )
            .label("rank"),
        )
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.conversation_id.in_(conv_ids))
        .subquery()
    )
    q = select(*[ranked.c[i] for i in range(len(_JOB_COLUMNS))]).where(ranked.c.rank == 1)
    return {r[1]: _job(r) for r in s.execute(q).all()}


#: 0 for an unfinished job, 1 for a finished one
_UNFINISHED_FIRST = case((Job.status.in_(UNFINISHED_JOB_STATES), 0), else_=1)
#: an unfinished job's age (oldest first); the same for every finished one
_OLDEST_IF_UNFINISHED = case((Job.status.in_(UNFINISHED_JOB_STATES), Job.created_at), else_=None)


def conversation(conversation_id: uuid.UUID) -> ConversationRow | None:
    q = (
        select(Conversation, Tenant.name)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Conversation.id == conversation_id)
    )
    with reader() as s:
        row = s.execute(q).first()
        if row is None:
            return None
        return _conv(row, _current_jobs(s, [conversation_id]).get(conversation_id))


def timeline(
    conversation_id: uuid.UUID, *, limit: int = 1000, before_seq: int | None = None
) -> Timeline | None:
    """The conversation's newest `limit` messages (those before `before_seq` if given), in
    seq order, and the jobs that answer them with their triggers, replies and attempts."""
    conv = conversation(conversation_id)
    if conv is None:
        return None
    top = conv.last_seq + 1 if before_seq is None else before_seq
    low = max(top - limit, 1)
    msgs_q = (
        select(Message, Participant.display_name, Participant.kind)
        .outerjoin(Participant, Participant.id == Message.author_id)
        .where(Message.conversation_id == conversation_id, Message.seq >= low, Message.seq < top)
        .order_by(Message.seq)
    )
    trig = (
        select(MessageJob.job_id, Message.seq, Message.created_at)
        .join(Message, Message.id == MessageJob.message_id)
        .where(
            MessageJob.conversation_id == conversation_id,
            MessageJob.status == LinkStatus.TRIGGER,
        )
    )
    jobs_q = (
        select(*_JOB_COLUMNS)
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.conversation_id == conversation_id)
        .order_by(Job.created_at, Job.id)
    )
    replies_q = select(Message.reply_to_job_id, Message.seq, Message.created_at).where(
        Message.conversation_id == conversation_id, Message.reply_to_job_id.is_not(None)
    )
    events_q = (
        select(Event.type, Event.created_at, Event.payload)
        .where(Event.conversation_id == conversation_id, Event.type.in_(ATTEMPT_EVENTS))
        .order_by(Event.id)
    )
    with reader() as s:
        messages = [
            MessageRow(
                m.id,
                m.seq,
                m.role,
                name,
                kind,
                m.content,
                m.created_at,
                m.reply_to_job_id,
                m.deleted_at is not None,
            )
            for m, name, kind in s.execute(msgs_q).all()
        ]
        jobs = {r[0]: TimelineJob(_job(r, conv.tenant)) for r in s.execute(jobs_q).all()}
        for job_id, seq, at in s.execute(trig).all():
            tj = jobs.get(job_id)
            if tj is not None:
                tj.trigger_seqs.append(seq)
                if tj.first_trigger_at is None or at < tj.first_trigger_at:
                    tj.first_trigger_at = at
        for replied, seq, at in s.execute(replies_q).all():
            if replied in jobs:
                jobs[replied].reply_seq, jobs[replied].reply_at = seq, at
        for type_, at, payload in s.execute(events_q).all():
            of_job = _uuid(payload.get("job_id"))
            if of_job is not None and of_job in jobs:
                jobs[of_job].history.append((type_, at, payload))
    for tj in jobs.values():
        tj.trigger_seqs.sort()
    shown = [tj for tj in jobs.values() if not tj.trigger_seqs or low <= tj.trigger_seqs[-1] < top]
    return Timeline(conv, messages, shown, low if low > 1 else None)


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def agents(tenant_id: uuid.UUID | None, *, parked_limit: int = 5) -> list[AgentRow]:
    """Every live agent (of one tenant, or all), with its active and waiting jobs and the
    conversations parked for its limits."""
    counts = (
        select(Job.agent_id, Job.status, func.count())
        .where(Job.status.in_((JobStatus.ACTIVE, JobStatus.WAITING, JobStatus.DELAYED)))
        .group_by(Job.agent_id, Job.status)
    )
    q = (
        select(Agent, Tenant.name)
        .join(Tenant, Tenant.id == Agent.tenant_id)
        .where(Agent.deleted_at.is_(None))
        .order_by(Tenant.name, Agent.name)
    )
    if tenant_id is not None:
        q = q.where(Agent.tenant_id == tenant_id)
        counts = counts.join(Agent, Agent.id == Job.agent_id).where(Agent.tenant_id == tenant_id)
    now = utcnow()
    with reader() as s:
        found = s.execute(q).all()
        by: dict[tuple[uuid.UUID, str], int] = {(a, st): n for a, st, n in s.execute(counts).all()}
        out = []
        for a, tenant in found:
            waiting = by.get((a.id, JobStatus.WAITING), 0) + by.get((a.id, JobStatus.DELAYED), 0)
            out.append(
                AgentRow(
                    a.id,
                    a.name,
                    a.tenant_id,
                    tenant,
                    a.status,
                    a.max_concurrent_jobs,
                    a.rate_limit_per_minute,
                    dict(a.model_config_ or {}),
                    a.total_responses,
                    a.last_response_at,
                    by.get((a.id, JobStatus.ACTIVE), 0),
                    waiting,
                    parked.for_agent(s, a.id, parked_limit, now) if waiting else [],
                )
            )
    return out


def agent_names(tenant_id: uuid.UUID | None) -> list[tuple[uuid.UUID, str, str]]:
    """(id, name, tenant name) of every live agent (of one tenant, or all), for filters."""
    q = (
        select(Agent.id, Agent.name, Tenant.name)
        .join(Tenant, Tenant.id == Agent.tenant_id)
        .where(Agent.deleted_at.is_(None))
        .order_by(Agent.name, Tenant.name)
    )
    if tenant_id is not None:
        q = q.where(Agent.tenant_id == tenant_id)
    with reader() as s:
        return [(i, n, t) for i, n, t in s.execute(q).all()]


def failed_jobs(
    tenant_id: uuid.UUID | None,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[JobRow]:
    """Failed jobs, the most recently failed first (of one tenant, or all)."""
    finished = func.coalesce(Job.finished_at, Job.updated_at)
    q = (
        select(*_JOB_COLUMNS, Tenant.name)
        .join(Agent, Agent.id == Job.agent_id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Job.status == JobStatus.FAILED)
    )
    if tenant_id is not None:
        q = q.where(Conversation.tenant_id == tenant_id)
    if after is not None:
        at, last_id = after
        q = q.where(or_(finished < at, and_(finished == at, Job.id < last_id)))
    q = q.order_by(finished.desc(), Job.id.desc()).limit(limit)
    with reader() as s:
        return [_job(r, r[-1]) for r in s.execute(q).all()]


def failed_job_ids(tenant_id: uuid.UUID | None, limit: int = 10_000) -> list[uuid.UUID]:
    """The ids of failed jobs (of one tenant, or all), oldest first."""
    q = (
        select(Job.id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .where(Job.status == JobStatus.FAILED)
        .order_by(Job.created_at)
        .limit(limit)
    )
    if tenant_id is not None:
        q = q.where(Conversation.tenant_id == tenant_id)
    with reader() as s:
        return list(s.scalars(q))


def job(job_id: uuid.UUID) -> JobRow | None:
    q = (
        select(*_JOB_COLUMNS, Tenant.name)
        .join(Agent, Agent.id == Job.agent_id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Job.id == job_id)
    )
    with reader() as s:
        row = s.execute(q).first()
    return None if row is None else _job(row, row[-1])


def profile_outcomes(
    since: timedelta, tenant_id: uuid.UUID | None = None
) -> dict[str, ProfileOutcomes]:
    """Per model profile (as agents name it), the jobs completed and failed and the
    attempts retried in the last `since`, of one tenant's agents (or of all)."""
    start = utcnow() - since
    profile = Agent.model_config_["profile"].as_string()
    finished = (
        select(profile, Job.status, func.count())
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.finished_at >= start, Job.status.in_((JobStatus.COMPLETED, JobStatus.FAILED)))
        .group_by(profile, Job.status)
    )
    retried = (
        select(profile, func.count())
        .select_from(Event)
        .join(Job, Job.id == Event.payload["job_id"].as_string().cast(Job.id.type))
        .join(Agent, Agent.id == Job.agent_id)
        .where(Event.type == "job.retrying", Event.created_at >= start)
        .group_by(profile)
    )
    if tenant_id is not None:
        finished = finished.where(Agent.tenant_id == tenant_id)
        retried = retried.where(Agent.tenant_id == tenant_id)
    out: dict[str, dict[str, int]] = {}
    with reader() as s:
        for name, status, n in s.execute(finished).all():
            out.setdefault(name or "default", {})[status] = n
        for name, n in s.execute(retried).all():
            out.setdefault(name or "default", {})["retried"] = n
    return {
        name: ProfileOutcomes(
            d.get(JobStatus.COMPLETED, 0), d.get(JobStatus.FAILED, 0), d.get("retried", 0)
        )
        for name, d in out.items()
    }


def tenants() -> list[tuple[uuid.UUID, str]]:
    with reader() as s:
        return [(i, n) for i, n in s.execute(select(Tenant.id, Tenant.name).order_by(Tenant.name))]


def find(raw_id: uuid.UUID) -> tuple[str, uuid.UUID] | None:
    """What an id names: ("job" | "conversation" | "agent", the conversation or agent to
    show, or the job), for the console's search; a message id gives its conversation."""
    with reader() as s:
        if s.scalar(select(Job.id).where(Job.id == raw_id)) is not None:
            return "job", raw_id
        if s.scalar(select(Conversation.id).where(Conversation.id == raw_id)) is not None:
            return "conversation", raw_id
        conv = s.scalar(select(Message.conversation_id).where(Message.id == raw_id))
        if conv is not None:
            return "conversation", conv
        if s.scalar(select(Agent.id).where(Agent.id == raw_id)) is not None:
            return "agent", raw_id
    return None


# --- bulk seeding, for ops/scripts/console_scale.py --------------------------------------


def seed_conversations(tenant_id: uuid.UUID, count: int, *, batch: int = 5000) -> None:
    """Insert `count` empty conversations of the tenant at once (Core bulk inserts), with
    distinct creation times a millisecond apart."""
    base = utcnow() - timedelta(milliseconds=count + 10)
    table = tables.conversations
    with transaction() as s:
        conn = s.connection()
        for start in range(0, count, batch):
            rows = [
                {
                    "id": uuid.uuid4(),
                    "kind": "dm",
                    "title": f"bulk {i}",
                    "tenant_id": tenant_id,
                    "settings": {},
                    "last_seq": 0,
                    "handled_seq": 0,
                    "created_at": base + timedelta(milliseconds=i),
                    "updated_at": base + timedelta(milliseconds=i),
                }
                for i in range(start, min(start + batch, count))
            ]
            conn.execute(insert(table), rows)


def seed_history(
    tenant_id: uuid.UUID, agent_id: uuid.UUID, *, messages: int, jobs: int
) -> uuid.UUID:
    """A conversation of the tenant with `messages` messages and `jobs` completed jobs
    (each answering a run of user messages with one reply among them), inserted at once.
    Returns its id."""
    now = utcnow()
    start = now - timedelta(seconds=messages * 2)
    conv_id, user_pid, agent_pid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # every `stride`-th message is the reply of one job to the messages before it
    stride = max(messages // max(jobs, 1), 2)
    msg_rows: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    link_rows: list[dict[str, Any]] = []
    pending: list[uuid.UUID] = []
    for seq in range(1, messages + 1):
        at = start + timedelta(seconds=2 * seq)
        mid = uuid.uuid4()
        is_reply = seq % stride == 0 and len(job_rows) < jobs and pending
        row = {
            "id": mid,
            "conversation_id": conv_id,
            "seq": seq,
            "author_id": agent_pid if is_reply else user_pid,
            "role": "assistant" if is_reply else "user",
            "content": f"reply number {len(job_rows) + 1}" if is_reply else f"message {seq}",
            "reply_to_job_id": None,
            "created_at": at,
            "updated_at": at,
        }
        if is_reply:
            jid = uuid.uuid4()
            row["reply_to_job_id"] = jid
            job_rows.append(
                {
                    "id": jid,
                    "conversation_id": conv_id,
                    "agent_id": agent_id,
                    "trigger_message_id": pending[0],
                    "status": JobStatus.COMPLETED,
                    "attempts": 1,
                    "max_attempts": 3,
                    "result": {"latency_ms": 900},
                    "created_at": at - timedelta(milliseconds=1500),
                    "started_at": at - timedelta(milliseconds=1400),
                    "finished_at": at - timedelta(milliseconds=100),
                    "updated_at": at,
                }
            )
            for trig in pending:
                link_rows.append(_link(trig, jid, agent_id, conv_id, LinkStatus.TRIGGER, at))
            link_rows.append(_link(mid, jid, agent_id, conv_id, LinkStatus.REPLY, at))
            pending = []
        else:
            pending.append(mid)
        msg_rows.append(row)
    with transaction() as s:
        conn = s.connection()
        conn.execute(
            insert(tables.conversations),
            [
                {
                    "id": conv_id,
                    "kind": "dm",
                    "title": "a long conversation",
                    "tenant_id": tenant_id,
                    "settings": {},
                    "last_seq": messages,
                    "handled_seq": messages,
                    "last_message_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        conn.execute(
            insert(tables.participants),
            [
                {
                    "id": user_pid,
                    "conversation_id": conv_id,
                    "kind": "user",
                    "user_id": "u1",
                    "agent_id": None,
                    "display_name": "u1",
                    "joined_at": start,
                },
                {
                    "id": agent_pid,
                    "conversation_id": conv_id,
                    "kind": "agent",
                    "user_id": None,
                    "agent_id": agent_id,
                    "display_name": "agent",
                    "joined_at": start,
                },
            ],
        )
        conn.execute(insert(tables.messages), msg_rows)
        if job_rows:
            conn.execute(insert(tables.jobs), job_rows)
            conn.execute(insert(tables.message_jobs), link_rows)
    return conv_id


def _link(
    message_id: uuid.UUID,
    job_id: uuid.UUID,
    agent_id: uuid.UUID,
    conv_id: uuid.UUID,
    status: str,
    at: datetime,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "message_id": message_id,
        "job_id": job_id,
        "agent_id": agent_id,
        "conversation_id": conv_id,
        "status": status,
        "created_at": at,
    }
