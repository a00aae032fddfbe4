"""The console's agents page: every live agent with its active and waiting jobs and the
conversations parked for its limits."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from agentq.clock import utcnow
from agentq.states import JobStatus
from agentq.store import parked
from agentq.store.console.rows import AgentRow
from agentq.store.models import Agent, Job, Tenant
from agentq.store.session import reader


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
