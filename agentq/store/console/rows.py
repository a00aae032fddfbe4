"""The rows the console's reads return, and the one column list every job read shares
(so that a job looks the same on the list, the timeline and the failed page)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentq.store.models import Agent, Job


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
    #: "hostname/pid" of the worker process that took up the current (or last) claim
    lease_holder: str | None
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


#: a job's columns, in JobRow's field order (selected with Agent joined on Job.agent_id)
JOB_COLUMNS = (
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
    Job.lease_holder,
    Job.next_attempt_at,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
    Job.result,
)

#: JobRow by position (a row's columns in JOB_COLUMNS order)
_MAKE_JOB: Any = JobRow


def job_row(row: Any, tenant: str | None = None) -> JobRow:
    """The JobRow of a result row that starts with JOB_COLUMNS."""
    made: JobRow = _MAKE_JOB(*row[: len(JOB_COLUMNS)], tenant=tenant)
    return made


def conversation_row(row: Any, job: JobRow | None = None) -> ConversationRow:
    """The ConversationRow of a (Conversation, tenant name) result row."""
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
