"""What `agentq jobs list` reads: jobs of every tenant, newest first, for operators.

Written to move as it is into `agentq/store/` (only `agentq.store` speaks SQL), e.g. beside
the tenant listings of `agentq/store/reads.py`; its one caller is `agentq/cli/jobs.py`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from agentq.store.models import Agent, Job
from agentq.store.session import reader

#: every job with its agent's name, newest first (filters are added per call)
_JOBS = select(Job, Agent.name).join(Agent, Agent.id == Job.agent_id)


def operator_jobs(status: str | None, agent: str | None, limit: int) -> list[dict[str, Any]]:
    """At most `limit` jobs, newest first, optionally of one status and one agent (by name):
    ids, agent, status, attempts, failure reason and times; never message bodies."""
    q = _JOBS
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
