"""Parked jobs: which conversations could start their next job now but for their agent's
limits or their tenant's cap, oldest first (`agentq.turn.schedule` wakes them). Reads of
the `jobs` table; its writes stay in `agentq.store.jobs`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select

from agentq.states import HOLDING_AGENT_STATES, OPEN_JOB_STATES, JobStatus
from agentq.store import tables
from agentq.store.session import Tx

J, A = tables.jobs, tables.agents


def for_agent(
    tx: Tx, agent_id: uuid.UUID, limit: int, now: datetime, *, exclude: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Conversations whose next job could start now but for the agent's limits, oldest
    first, at most `limit`: a waiting job in a conversation with no open job, or a
    delayed job whose retry time is over."""
    query = _READY.where(J.c.conversation_id != exclude) if exclude is not None else _READY
    params = {"agent_id": agent_id, "limit": limit, "now": now}
    return list(tx.connection().execute(query, params).scalars())


def in_tenant(tx: Tx, tenant_id: uuid.UUID, limit: int, now: datetime) -> list[uuid.UUID]:
    """Conversations whose next job could start now but for its limits, of any agent of
    the tenant that is not paused or stopped, oldest first, at most `limit`."""
    params = {"tenant_id": tenant_id, "limit": limit, "now": now}
    return list(tx.connection().execute(_READY_IN_TENANT, params).scalars())


_OPEN = J.alias("open_job")
#: a job that could start now but for its limits: waiting in a conversation with no open
#: job, or delayed past its retry time
_STARTABLE = or_(
    (J.c.status == JobStatus.WAITING)
    & ~select(_OPEN.c.id)
    .where(
        _OPEN.c.conversation_id == J.c.conversation_id,
        _OPEN.c.status.in_(OPEN_JOB_STATES),
    )
    .exists(),
    (J.c.status == JobStatus.DELAYED) & (J.c.next_attempt_at <= bindparam("now")),
)


def _oldest_conversations(whose: Any) -> Any:
    return (
        select(J.c.conversation_id)
        .where(whose, _STARTABLE)
        .group_by(J.c.conversation_id)
        .order_by(func.min(J.c.created_at))
        .limit(bindparam("limit"))
    )


#: see `for_agent`
_READY = _oldest_conversations(J.c.agent_id == bindparam("agent_id"))
#: see `in_tenant`
_READY_IN_TENANT = _oldest_conversations(
    J.c.agent_id.in_(
        select(A.c.id).where(
            A.c.tenant_id == bindparam("tenant_id"), A.c.status.not_in(HOLDING_AGENT_STATES)
        )
    )
)
