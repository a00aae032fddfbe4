"""What a tenant may see: its own agents and conversations (and their jobs and events).

Another tenant's ids answer 404, exactly like ids that do not exist, so that a key
cannot even learn which ids exist elsewhere.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from agentq.errors import AgentNotFound, ConversationNotFound, JobNotFound
from agentq.ops.keys import Principal
from agentq.store.models import Agent, Conversation, Job
from agentq.store.session import reader


def own_conversation(who: Principal, conversation_id: uuid.UUID) -> None:
    with reader() as session:
        tenant = session.scalar(
            select(Conversation.tenant_id).where(Conversation.id == conversation_id)
        )
    if tenant is None or tenant != who.tenant_id:
        raise ConversationNotFound(conversation_id)


def own_agent(who: Principal, agent_id: uuid.UUID) -> None:
    with reader() as session:
        tenant = session.scalar(select(Agent.tenant_id).where(Agent.id == agent_id))
    if tenant is None or tenant != who.tenant_id:
        raise AgentNotFound(agent_id)


def own_job(who: Principal, job_id: uuid.UUID) -> None:
    with reader() as session:
        tenant = session.scalar(
            select(Conversation.tenant_id)
            .join(Job, Job.conversation_id == Conversation.id)
            .where(Job.id == job_id)
        )
    if tenant is None or tenant != who.tenant_id:
        raise JobNotFound(job_id)


def agent_ids(who: Principal) -> set[str]:
    with reader() as session:
        rows = session.scalars(select(Agent.id).where(Agent.tenant_id == who.tenant_id))
        return {str(a) for a in rows}
