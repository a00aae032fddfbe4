"""Counts an operator reads: the state gauges of `/metrics`, and the readiness probe.

Prometheus scrapes often, so each count is one statement, all in one session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select, text

from agentq.states import JobStatus
from agentq.store.models import Agent, Conversation, Job, Message
from agentq.store.session import reader


@dataclass(frozen=True)
class AgentRow:
    """An agent as the gauges see it."""

    id: uuid.UUID
    name: str
    status: str
    total_responses: int


@dataclass(frozen=True)
class QueueState:
    """The queue's state in the database at one moment."""

    #: job count by status (statuses with no job are absent)
    jobs_by_status: dict[str, int]
    agents: list[AgentRow]
    #: active jobs by agent id (agents with none are absent); names are unique only
    #: within a tenant
    active_jobs_by_agent: dict[uuid.UUID, int]
    #: conversations with a message since the `active_since` asked for
    active_conversations: int
    #: messages created since the `messages_since` asked for
    recent_messages: int


# Statements built once.
#: (status, count) of jobs, one row a status
_JOBS_BY_STATUS = select(Job.status, func.count()).group_by(Job.status)
#: (id, name, status, total_responses) of every agent
_AGENTS = select(Agent.id, Agent.name, Agent.status, Agent.total_responses)
#: (agent id, count) of active jobs, one row an agent with any
_ACTIVE_BY_AGENT = (
    select(Job.agent_id, func.count()).where(Job.status == JobStatus.ACTIVE).group_by(Job.agent_id)
)
#: how many conversations have a message since :since
_ACTIVE_CONVERSATIONS = (
    select(func.count())
    .select_from(Conversation)
    .where(Conversation.last_message_at >= bindparam("since"))
)
#: how many messages were created since :since
_RECENT_MESSAGES = (
    select(func.count()).select_from(Message).where(Message.created_at >= bindparam("since"))
)
#: when the oldest job still waiting for its turn was created (None: none waits)
_OLDEST_WAITING = select(func.min(Job.created_at)).where(Job.status == JobStatus.WAITING)
#: the cheapest statement a database answers
_PING = text("SELECT 1")


def queue_state(*, active_since: datetime, messages_since: datetime) -> QueueState:
    """Jobs by status, agents, active jobs by agent, and the conversations and messages
    active since the given times: five statements in one read session."""
    with reader() as session:
        by_status = {status: n for status, n in session.execute(_JOBS_BY_STATUS)}
        agents = [AgentRow(i, n, s, t) for i, n, s, t in session.execute(_AGENTS)]
        active = {agent_id: n for agent_id, n in session.execute(_ACTIVE_BY_AGENT)}
        conversations = session.scalar(_ACTIVE_CONVERSATIONS, {"since": active_since}) or 0
        messages = session.scalar(_RECENT_MESSAGES, {"since": messages_since}) or 0
    return QueueState(by_status, agents, active, conversations, messages)


def oldest_waiting_since() -> datetime | None:
    """When the oldest waiting job was created: a conversation whose turn never comes
    shows here first (the stuck-conversation alert)."""
    with reader() as session:
        return session.scalar(_OLDEST_WAITING)


def ping() -> None:
    """Run `SELECT 1`; raises whatever the driver raises if the database does not answer."""
    with reader() as session:
        session.execute(_PING)
