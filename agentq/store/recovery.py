"""What the reconciler looks for in the `jobs` table: work that should have moved and did
not (the table's writes stay in `agentq.store.jobs`).

Each kind of trouble is its own query, oldest first, paged by a keyset cursor (`after`:
the last row's sort key and id), and leaves out what re-driving cannot help: the jobs of
paused agents wait for resume, whatever their number.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_

from agentq.states import HOLDING_AGENT_STATES, JobStatus
from agentq.store import tables
from agentq.store.session import Record, Tx

J, A = tables.jobs, tables.agents

#: a page's cursor: the last row's sort key and id
Cursor = tuple[Any, uuid.UUID]

_NOT_PAUSED = A.c.status.not_in(HOLDING_AGENT_STATES)

#: active jobs whose lease ran out (their worker is presumed dead), oldest lease first
_EXPIRED = (
    select(J.c.lease_until.label("key"), J.c.id, J.c.conversation_id)
    .join(A, A.c.id == J.c.agent_id)
    .where(J.c.status == JobStatus.ACTIVE, J.c.lease_until < bindparam("now"), _NOT_PAUSED)
    .order_by(J.c.lease_until, J.c.id)
)
#: agents (not paused) with a job parked for them since before the grace: waiting, or
#: delayed past its retry time
_PARKED = (
    select(J.c.agent_id.label("key"), J.c.agent_id.label("id"))
    .join(A, A.c.id == J.c.agent_id)
    .where(
        _NOT_PAUSED,
        ((J.c.status == JobStatus.WAITING) & (J.c.created_at < bindparam("grace")))
        | ((J.c.status == JobStatus.DELAYED) & (J.c.next_attempt_at < bindparam("grace"))),
    )
    .group_by(J.c.agent_id)
    .order_by(J.c.agent_id)
)
#: active jobs whose answer is stored but not written since before the grace
_ANSWERED = (
    select(J.c.updated_at.label("key"), J.c.id)
    .where(
        J.c.status == JobStatus.ACTIVE,
        J.c.result.is_not(None),
        J.c.updated_at < bindparam("grace"),
    )
    .order_by(J.c.updated_at, J.c.id)
)
#: jobs under a current lease, with their agents
_RUNNING = (
    select(J.c.id.label("key"), J.c.id, J.c.agent_id)
    .where(J.c.status == JobStatus.ACTIVE, J.c.lease_until >= bindparam("now"))
    .order_by(J.c.id)
)


def _page(
    tx: Tx, query: Any, key: Any, after: Cursor | None, limit: int, **params: Any
) -> list[Record]:
    if after is not None:
        query = query.where(tuple_(key, J.c.id) > tuple_(*after))
    return list(tx.connection().execute(query.limit(limit), params))


def expired(tx: Tx, now: datetime, after: Cursor | None, limit: int) -> list[Record]:
    """(key, id, conversation_id) of active jobs whose lease ran out, oldest first."""
    return _page(tx, _EXPIRED, J.c.lease_until, after, limit, now=now)


def parked_agents(tx: Tx, grace: datetime, after: Cursor | None, limit: int) -> list[Record]:
    """(key, id) of agents with jobs parked for them since before `grace`."""
    query = _PARKED if after is None else _PARKED.where(J.c.agent_id > after[1])
    return list(tx.connection().execute(query.limit(limit), {"grace": grace}))


def answered(tx: Tx, grace: datetime, after: Cursor | None, limit: int) -> list[Record]:
    """(key, id) of active jobs whose answer is stored but not written since `grace`."""
    return _page(tx, _ANSWERED, J.c.updated_at, after, limit, grace=grace)


def running(tx: Tx, now: datetime, after: Cursor | None, limit: int) -> list[Record]:
    """(key, id, agent_id) of the jobs under a current lease."""
    return _page(tx, _RUNNING, J.c.id, after, limit, now=now)


def still_active(tx: Tx, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `job_ids` are still active."""
    query = select(J.c.id).where(J.c.id.in_(job_ids), J.c.status == JobStatus.ACTIVE)
    return set(tx.connection().execute(query).scalars())


def statuses(tx: Tx, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of `job_ids` that exists."""
    query = select(J.c.id, J.c.status).where(J.c.id.in_(job_ids))
    return {row.id: row.status for row in tx.connection().execute(query)}
