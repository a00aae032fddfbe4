"""The `agents` table: who answers, and whether it may take a job now.

An agent is `busy` while its running jobs fill `max_concurrent_jobs`; `free_slot` is the
one rule that makes it `active` again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select, update

from agentq.errors import AgentNotFound
from agentq.schemas import AgentOut
from agentq.states import AgentStatus, JobStatus
from agentq.store import tables
from agentq.store.models import Agent
from agentq.store.session import Record, Tx

A, J = tables.agents, tables.jobs

#: lock the agent of a job about to start, with its limits
_LOCK_FOR_CLAIM = (
    select(A.c.status, A.c.name, A.c.max_concurrent_jobs, A.c.rate_limit_per_minute)
    .where(A.c.id == bindparam("agent_id"))
    .with_for_update(key_share=True)
)
#: lock an agent
_LOCK = (
    select(A.c.id, A.c.name, A.c.status, A.c.max_concurrent_jobs)
    .where(A.c.id == bindparam("agent_id"))
    .with_for_update(key_share=True)
)
#: an active agent whose running jobs fill its limit is busy
_MARK_BUSY = (
    update(A)
    .where(A.c.id == bindparam("agent_id"), A.c.status == AgentStatus.ACTIVE)
    .values(status=AgentStatus.BUSY)
)
#: a busy agent is active again unless its other running jobs still fill its limit
_FREED_STATUS = case(
    (
        (A.c.status == AgentStatus.BUSY)
        & (
            select(func.count())
            .where(J.c.agent_id == bindparam("agent_id"), J.c.status == JobStatus.ACTIVE)
            .scalar_subquery()
            < A.c.max_concurrent_jobs
        ),
        AgentStatus.ACTIVE,
    ),
    else_=A.c.status,
)
#: a job of the agent ended without a reply (run after the job left `active`)
_FREE_SLOT = (
    update(A)
    .where(A.c.id == bindparam("agent_id"))
    .values(status=_FREED_STATUS)
    .returning(A.c.status, A.c.max_concurrent_jobs)
)
#: a job of the agent replied: its slot is free and its counters move
_FREE_SLOT_RESPONDED = (
    update(A)
    .where(A.c.id == bindparam("agent_id"))
    .values(
        status=_FREED_STATUS,
        total_responses=A.c.total_responses + 1,
        last_response_at=bindparam("now"),
    )
    .returning(A.c.status, A.c.max_concurrent_jobs)
)


def lock_for_claim(tx: Tx, agent_id: uuid.UUID) -> Record:
    """(status, name, max_concurrent_jobs, rate_limit_per_minute), locked."""
    return tx.connection().execute(_LOCK_FOR_CLAIM, {"agent_id": agent_id}).one()


def lock(tx: Tx, agent_id: uuid.UUID) -> Record:
    """(id, name, status, max_concurrent_jobs), locked."""
    return tx.connection().execute(_LOCK, {"agent_id": agent_id}).one()


def limits_of(tx: Tx, agent_id: uuid.UUID) -> Record | None:
    """(status, max_concurrent_jobs) of the agent, if it exists."""
    query = select(A.c.status, A.c.max_concurrent_jobs).where(A.c.id == agent_id)
    return tx.connection().execute(query).first()


def mark_busy(tx: Tx, agent_id: uuid.UUID) -> None:
    """The agent is at its concurrency limit (if it was active)."""
    tx.connection().execute(_MARK_BUSY, {"agent_id": agent_id})


def free_slot(tx: Tx, agent_id: uuid.UUID, *, responded_at: datetime | None = None) -> Record:
    """A job of the agent left `active`: (status, max_concurrent_jobs) after freeing its
    slot. With `responded_at`, the job replied: the agent's counters move too."""
    conn = tx.connection()
    if responded_at is None:
        return conn.execute(_FREE_SLOT, {"agent_id": agent_id}).one()
    return conn.execute(_FREE_SLOT_RESPONDED, {"agent_id": agent_id, "now": responded_at}).one()


# -- agents, for producers and operators ----------------------------------------------------


def exists_named(tx: Tx, name: str) -> bool:
    """Whether an agent has this name."""
    return tx.connection().execute(select(A.c.id).where(A.c.name == name)).first() is not None


def create(tx: Tx, **columns: Any) -> AgentOut:
    """A new agent with `columns` (`model_config_` for its model configuration)."""
    agent = Agent(**columns)
    tx.add(agent)
    tx.flush()
    return AgentOut.model_validate(agent)


def find(tx: Tx, agent: uuid.UUID | str, *, lock: bool = False) -> AgentOut:
    """The agent by id or by name (locked with `lock`), or AgentNotFound."""
    try:
        query = select(Agent).where(Agent.id == uuid.UUID(str(agent)))
    except ValueError:
        query = select(Agent).where(Agent.name == str(agent))
    if lock:
        query = query.with_for_update(key_share=True)
    row = tx.scalar(query)
    if row is None:
        raise AgentNotFound(agent)
    return AgentOut.model_validate(row)


def all_agents(tx: Tx) -> list[AgentOut]:
    """Every agent, by name."""
    return [AgentOut.model_validate(a) for a in tx.scalars(select(Agent).order_by(Agent.name))]


def set_status(tx: Tx, agent_id: uuid.UUID, status: AgentStatus) -> None:
    """The agent's new lifecycle status."""
    tx.connection().execute(update(A).where(A.c.id == agent_id).values(status=status))
