"""The console's jobs: the failed ones (newest failure first), one job, and the recent
outcomes per model profile the providers page counts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from agentq.clock import utcnow
from agentq.states import JobStatus
from agentq.store.console.rows import JOB_COLUMNS, JobRow, ProfileOutcomes, job_row
from agentq.store.models import Agent, Conversation, Event, Job, Tenant
from agentq.store.session import reader


def failed_jobs(
    tenant_id: uuid.UUID | None,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[JobRow]:
    """Failed jobs, the most recently failed first (of one tenant, or all)."""
    finished = func.coalesce(Job.finished_at, Job.updated_at)
    q = (
        select(*JOB_COLUMNS, Tenant.name)
        .join(Agent, Agent.id == Job.agent_id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Job.status == JobStatus.FAILED)
    )
    if tenant_id is not None:
        q = q.where(Conversation.tenant_id == tenant_id)
    if after is not None:
        at, last_id = after
        q = q.where(or_(finished < at, and_(finished == at, Job.id < last_id)))
    q = q.order_by(finished.desc(), Job.id.desc()).limit(limit)
    with reader() as s:
        return [job_row(r, r[-1]) for r in s.execute(q).all()]


def failed_job_ids(tenant_id: uuid.UUID | None, limit: int = 10_000) -> list[uuid.UUID]:
    """The ids of failed jobs (of one tenant, or all), oldest first."""
    q = (
        select(Job.id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .where(Job.status == JobStatus.FAILED)
        .order_by(Job.created_at)
        .limit(limit)
    )
    if tenant_id is not None:
        q = q.where(Conversation.tenant_id == tenant_id)
    with reader() as s:
        return list(s.scalars(q))


def job(job_id: uuid.UUID) -> JobRow | None:
    q = (
        select(*JOB_COLUMNS, Tenant.name)
        .join(Agent, Agent.id == Job.agent_id)
        .join(Conversation, Conversation.id == Job.conversation_id)
        .outerjoin(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Job.id == job_id)
    )
    with reader() as s:
        row = s.execute(q).first()
    return None if row is None else job_row(row, row[-1])


def profile_outcomes(
    since: timedelta, tenant_id: uuid.UUID | None = None
) -> dict[str, ProfileOutcomes]:
    """Per model profile (as agents name it), the jobs completed and failed and the
    attempts retried in the last `since`, of one tenant's agents (or of all)."""
    start = utcnow() - since
    profile = Agent.model_config_["profile"].as_string()
    finished = (
        select(profile, Job.status, func.count())
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.finished_at >= start, Job.status.in_((JobStatus.COMPLETED, JobStatus.FAILED)))
        .group_by(profile, Job.status)
    )
    retried = (
        select(profile, func.count())
        .select_from(Event)
        .join(Job, Job.id == Event.payload["job_id"].as_string().cast(Job.id.type))
        .join(Agent, Agent.id == Job.agent_id)
        .where(Event.type == "job.retrying", Event.created_at >= start)
        .group_by(profile)
    )
    if tenant_id is not None:
        finished = finished.where(Agent.tenant_id == tenant_id)
        retried = retried.where(Agent.tenant_id == tenant_id)
    out: dict[str, dict[str, int]] = {}
    with reader() as s:
        for name, status, n in s.execute(finished).all():
            out.setdefault(name or "default", {})[status] = n
        for name, n in s.execute(retried).all():
            out.setdefault(name or "default", {})["retried"] = n
    return {
        name: ProfileOutcomes(
            d.get(JobStatus.COMPLETED, 0), d.get(JobStatus.FAILED, 0), d.get("retried", 0)
        )
        for name, d in out.items()
    }
