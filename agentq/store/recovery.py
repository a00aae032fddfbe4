"""What the reconciler looks for in the `jobs` table: work that should have moved and did
not (the table's writes stay in `agentq.store.jobs`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select

from agentq.states import JobStatus
from agentq.store.jobs import J
from agentq.store.session import Record, Tx


def stalled_conversations(tx: Tx, now: datetime, grace: datetime, limit: int) -> list[uuid.UUID]:
    """Conversations whose next job should have started: waiting past `grace`, a lease run
    out, or a retry delay over."""
    query = (
        select(J.c.conversation_id)
        .where(
            or_(
                (J.c.status == JobStatus.WAITING) & (J.c.created_at < grace),
                (J.c.status == JobStatus.ACTIVE) & (J.c.lease_until < now),
                (J.c.status == JobStatus.DELAYED) & (J.c.next_attempt_at < grace),
            )
        )
        .distinct()
        .limit(limit)
    )
    return list(tx.connection().execute(query).scalars())


def running(tx: Tx, now: datetime) -> list[Record]:
    """(agent_id, id) of the jobs under a current lease."""
    query = select(J.c.agent_id, J.c.id).where(
        J.c.status == JobStatus.ACTIVE, J.c.lease_until >= now
    )
    return list(tx.connection().execute(query))


def answered(tx: Tx, grace: datetime, limit: int) -> list[uuid.UUID]:
    """Active jobs whose answer is stored but not written since before `grace`."""
    query = (
        select(J.c.id)
        .where(J.c.status == JobStatus.ACTIVE, J.c.result.is_not(None), J.c.updated_at < grace)
        .limit(limit)
    )
    return list(tx.connection().execute(query).scalars())


def still_active(tx: Tx, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `job_ids` are still active."""
    query = select(J.c.id).where(J.c.id.in_(job_ids), J.c.status == JobStatus.ACTIVE)
    return set(tx.connection().execute(query).scalars())
