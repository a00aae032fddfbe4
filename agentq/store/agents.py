"""The `agents` table: who answers, and whether it may take a job now.

An agent is `busy` while its running jobs fill `max_concurrent_jobs`; `free_slot` is the
one rule that makes it `active` again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, select, update
from sqlalchemy.exc import IntegrityError

from agentq import names
from agentq.errors import AgentNotFound, Conflict
from agentq.schemas import AgentOut
from agentq.states import AgentStatus, JobStatus
from agentq.store import tables
from agentq.store.models import Agent
from agentq.store.session import Record, Tx

A, J = tables.agents, tables.jobs

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


def free_slot_statement(*, responded: bool) -> Any:
    """The UPDATE that frees a slot of agent `agent_id` (run after its job left `active`);
    `responded`: the job replied at `now`, so its counters move too."""
    freed = update(A).where(A.c.id == bindparam("agent_id"))
    if not responded:
        return freed.values(status=_FREED_STATUS)
    return freed.values(
        status=_FREED_STATUS,
        total_responses=A.c.total_responses + 1,
        last_response_at=bindparam("now"),
    )


#: a job of the agent ended without a reply (run after the job left `active`)
_FREE_SLOT = free_slot_statement(responded=False).returning(A.c.status, A.c.max_concurrent_jobs)
#: a job of the agent replied: its slot is free and its counters move
_FREE_SLOT_RESPONDED = free_slot_statement(responded=True).returning(
    A.c.status, A.c.max_concurrent_jobs
)


def lock(tx: Tx, agent_id: uuid.UUID) -> Record:
    """(id, name, status, max_concurrent_jobs), locked."""
    return tx.connection().execute(_LOCK, {"agent_id": agent_id}).one()


def limits_of(tx: Tx, agent_id: uuid.UUID) -> Record | None:
    """(status, max_concurrent_jobs, rate_limit_per_minute, tenant_id) of the agent, if it
    exists."""
    query = select(
        A.c.status, A.c.max_concurrent_jobs, A.c.rate_limit_per_minute, A.c.tenant_id
    ).where(A.c.id == agent_id)
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
# Deleted agents (deleted_at set) are left out of every lookup below: to a caller they do
# not exist. The statements of a running turn (above) still reach them by id.

#: the agents that are not deleted
_LIVE = Agent.deleted_at.is_(None)


def _named(name: str) -> ColumnElement[bool]:
    # the unique index is on name_key: the same rule as @mentions
    return Agent.name_key == names.key(name)


def exists_named(tx: Tx, name: str, tenant_id: uuid.UUID) -> bool:
    """Whether a live agent of the tenant has this name, in any case."""
    query = select(Agent.id).where(Agent.tenant_id == tenant_id, _named(name), _LIVE)
    return tx.scalar(query) is not None


def create(tx: Tx, **columns: Any) -> AgentOut:
    """A new agent with `columns` (`model_config_` for its model configuration); Conflict
    if its tenant has a live agent of that name (in any case), also when a concurrent
    create got there first: the unique index decides."""
    agent = Agent(**columns)
    tx.add(agent)
    try:
        tx.flush()
    except IntegrityError as exc:
        if "unique" not in str(exc.orig).lower():
            raise
        raise Conflict(f"an agent named {columns.get('name')!r} already exists") from None
    return AgentOut.model_validate(agent)


def find(
    tx: Tx, agent: uuid.UUID | str, *, lock: bool = False, tenant_id: uuid.UUID | None = None
) -> AgentOut:
    """The live agent by id or by name (any case), locked with `lock`, or AgentNotFound.

    With `tenant_id`, only that tenant's agents are found. Without it, an id finds the
    agent of any tenant, and a name must be one tenant's only (else Conflict: give the
    id or the tenant)."""
    query = select(Agent).where(_LIVE)
    if tenant_id is not None:
        query = query.where(Agent.tenant_id == tenant_id)
    try:
        query = query.where(Agent.id == uuid.UUID(str(agent)))
    except ValueError:
        query = query.where(_named(str(agent))).limit(2)
    if lock:
        query = query.with_for_update(key_share=True)
    rows = tx.scalars(query).all()
    if not rows:
        raise AgentNotFound(agent)
    if len(rows) > 1:
        raise Conflict(f"agents of several tenants are named {agent!r}; give its id or tenant")
    return AgentOut.model_validate(rows[0])


def all_agents(tx: Tx, tenant_id: uuid.UUID | None = None) -> list[AgentOut]:
    """The live agents of the tenant (None: of every tenant), by name."""
    query = select(Agent).where(_LIVE).order_by(Agent.name, Agent.id)
    if tenant_id is not None:
        query = query.where(Agent.tenant_id == tenant_id)
    return [AgentOut.model_validate(a) for a in tx.scalars(query)]


def update_agent(tx: Tx, agent_id: uuid.UUID, **columns: Any) -> AgentOut:
    """Set `columns` of the live agent (`model_config_` for its model configuration)."""
    row = tx.scalar(select(Agent).where(Agent.id == agent_id, _LIVE).with_for_update())
    if row is None:
        raise AgentNotFound(agent_id)
    for column, value in columns.items():
        setattr(row, column, value)
    tx.flush()
    return AgentOut.model_validate(row)


def mark_deleted(tx: Tx, agent_id: uuid.UUID, now: datetime) -> str | None:
    """Delete the agent (soft) unless it is deleted already; its status, or None if it
    was not live. Its name is free again in its tenant."""
    done = tx.connection().execute(
        update(A)
        .where(A.c.id == agent_id, A.c.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
        .returning(A.c.status)
    )
    return done.scalar()


def set_status(tx: Tx, agent_id: uuid.UUID, status: AgentStatus) -> None:
    """The agent's new lifecycle status."""
    tx.connection().execute(update(A).where(A.c.id == agent_id).values(status=status))
