"""What names and ids stand for: the tenant and agent pickers of the lists' filters, and
what an id names for the console's search box."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from agentq.store.models import Agent, Conversation, Job, Message, Tenant
from agentq.store.session import reader


def tenants() -> list[tuple[uuid.UUID, str]]:
    """(id, name) of every tenant, by name."""
    with reader() as s:
        return [(i, n) for i, n in s.execute(select(Tenant.id, Tenant.name).order_by(Tenant.name))]


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
