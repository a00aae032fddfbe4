"""The console's conversation list: one page of conversations, newest first, each with
the job that says where it stands; and one conversation the same way."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import aliased

from agentq.states import UNFINISHED_JOB_STATES, JobStatus
from agentq.store.console.rows import (
    JOB_COLUMNS,
    ConversationRow,
    JobRow,
    conversation_row,
    job_row,
)
from agentq.store.models import Agent, Conversation, Job, Participant, Tenant
from agentq.store.session import reader

#: the states a conversation is shown in, in the order they win
STATES = ("running", "waiting", "debouncing", "failed", "idle")

#: 0 for an unfinished job, 1 for a finished one
_UNFINISHED_FIRST = case((Job.status.in_(UNFINISHED_JOB_STATES), 0), else_=1)
#: an unfinished job's age (oldest first); the same for every finished one
_OLDEST_IF_UNFINISHED = case((Job.status.in_(UNFINISHED_JOB_STATES), Job.created_at), else_=None)


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
    return [conversation_row(r, jobs.get(r[0].id)) for r in rows]


def conversation(conversation_id: uuid.UUID) -> ConversationRow | None:
    """One conversation with the job that says where it stands (None: no such one)."""
    q = (
        select(Conversation, Tenant.name)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Conversation.id == conversation_id)
    )
    with reader() as s:
        row = s.execute(q).first()
        if row is None:
            return None
        return conversation_row(row, _current_jobs(s, [conversation_id]).get(conversation_id))


def _current_jobs(s: Any, conv_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobRow]:
    """Per conversation, its first unfinished job, else its newest."""
    if not conv_ids:
        return {}
    ranked = (
        select(
            *JOB_COLUMNS,
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
    q = select(*[ranked.c[i] for i in range(len(JOB_COLUMNS))]).where(ranked.c.rank == 1)
    return {r[1]: job_row(r) for r in s.execute(q).all()}
