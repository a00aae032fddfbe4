"""Reads for the HTTP API and the client: a tenant's agents, conversations and jobs, and
where the answer to a message stands. One statement each, returning detached schemas.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select

from agentq.schemas import ConversationOut, JobOut, MessageOut
from agentq.states import LinkStatus
from agentq.store.models import Agent, Conversation, Job, Message, MessageJob
from agentq.store.session import reader


@dataclass(frozen=True)
class TriggeredJob:
    """A job a message caused, with the reply it wrote (None until it completed)."""

    id: uuid.UUID
    status: str
    failure_reason: str | None
    reply: MessageOut | None


# Statements built once.
#: tenant :tenant_id's conversations, newest first, one page (:limit, :offset)
_TENANT_CONVERSATIONS = (
    select(Conversation)
    .where(Conversation.tenant_id == bindparam("tenant_id"))
    .order_by(Conversation.created_at.desc(), Conversation.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
#: the conversation of message :message_id
_MESSAGE_CONVERSATION = select(Message.conversation_id).where(Message.id == bindparam("message_id"))
#: the jobs message :message_id triggered, oldest first, each with its reply if any
_TRIGGERED_JOBS = (
    select(Job.id, Job.status, Job.failure_reason, Message)
    .join(MessageJob, MessageJob.job_id == Job.id)
    .outerjoin(Message, Message.reply_to_job_id == Job.id)
    .where(
        MessageJob.message_id == bindparam("message_id"), MessageJob.status == LinkStatus.TRIGGER
    )
    .order_by(Job.created_at)
)


def tenant_conversations(tenant_id: uuid.UUID, *, limit: int, offset: int) -> list[ConversationOut]:
    """One page of the tenant's conversations, newest first."""
    params = {"tenant_id": tenant_id, "limit": limit, "offset": offset}
    with reader() as session:
        rows = session.scalars(_TENANT_CONVERSATIONS, params)
        return [ConversationOut.model_validate(c) for c in rows]


def tenant_jobs(
    tenant_id: uuid.UUID,
    *,
    status: str | None = None,
    conversation_id: uuid.UUID | None = None,
    limit: int,
    offset: int,
) -> list[JobOut]:
    """One page of the jobs of the tenant's conversations, newest first, optionally of one
    status and one conversation."""
    q = (
        select(Job)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .where(Conversation.tenant_id == tenant_id)
    )
    if status is not None:
        q = q.where(Job.status == status)
    if conversation_id is not None:
        q = q.where(Job.conversation_id == conversation_id)
    q = q.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    with reader() as session:
        return [JobOut.model_validate(j) for j in session.scalars(q)]


def message_conversation(message_id: uuid.UUID) -> uuid.UUID | None:
    """The conversation of the message; None if there is no such message."""
    with reader() as session:
        return session.scalar(_MESSAGE_CONVERSATION, {"message_id": message_id})


def triggered_jobs(message_id: uuid.UUID) -> list[TriggeredJob]:
    """The jobs the message triggered, oldest first, each with the reply it wrote."""
    with reader() as session:
        rows = session.execute(_TRIGGERED_JOBS, {"message_id": message_id}).all()
        return [
            TriggeredJob(
                job_id,
                status,
                reason,
                MessageOut.model_validate(reply) if reply is not None else None,
            )
            for job_id, status, reason, reply in rows
        ]


#: every job with its agent's name, newest first (filters are added per call)
_OPERATOR_JOBS = select(Job, Agent.name).join(Agent, Agent.id == Job.agent_id)


def operator_jobs(status: str | None, agent: str | None, limit: int) -> list[dict[str, Any]]:
    """At most `limit` jobs, newest first, optionally of one status and one agent (by name):
    ids, agent, status, attempts, failure reason and times; never message bodies."""
    q = _OPERATOR_JOBS
    if status:
        q = q.where(Job.status == status)
    if agent:
        q = q.where(Agent.name == agent)
    q = q.order_by(Job.created_at.desc()).limit(limit)
    with reader() as session:
        return [
            {
                "id": str(j.id),
                "conversation_id": str(j.conversation_id),
                "agent": name,
                "status": j.status,
                "attempts": j.attempts,
                "max_attempts": j.max_attempts,
                "failure_reason": j.failure_reason,
                "created_at": j.created_at,
                "finished_at": j.finished_at,
            }
            for j, name in session.execute(q).all()
        ]
