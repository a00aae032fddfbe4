"""The `tenants` table: a tenant by name, created the first time it is named.

The CLI and `agentq.Client` act for a tenant named by the caller (default: "default");
API keys name theirs when created. Concurrent first uses of one name share one tenant.

Also a tenant's pending messages (backpressure, `agentq.runtime.backpressure`): what it
posted that is not answered yet, counted exactly from the conversations and jobs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, select, union, update
from sqlalchemy.exc import IntegrityError

from agentq.errors import Conflict, TenantNotFound
from agentq.states import UNFINISHED_JOB_STATES, LinkStatus, Role
from agentq.store import tables
from agentq.store.models import Tenant
from agentq.store.session import Tx, reader, transaction

T = cast(Table, Tenant.__table__)
C, M, MJ, J = tables.conversations, tables.messages, tables.message_jobs, tables.jobs

#: the id of the tenant named :name
_ID_BY_NAME = select(Tenant.id).where(Tenant.name == bindparam("name"))
#: every tenant: (id, name, max_pending_messages), by name
_ALL = select(T.c.id, T.c.name, T.c.max_pending_messages).order_by(T.c.name)
#: a tenant's own limit
_SET_LIMIT = update(T).where(T.c.name == bindparam("tenant_name"))
#: what a tenant posted, as against agents' replies and agentq's notices
_POSTED = (M.c.reply_to_job_id.is_(None), M.c.role != Role.SYSTEM, M.c.deleted_at.is_(None))


def _pending(one_tenant: bool) -> Select[Any]:
    """(tenant_id, pending) of every tenant with any, or of :tenant_id alone.

    Pending: posted messages not dispatched yet (seq past `handled_seq`, only in
    conversations with an open window: `pending_since` is indexed and set whenever
    `last_seq > handled_seq`) and those that trigger an unfinished job (`jobs.status` is
    indexed). A message carried into another job is in both lists once: UNION.
    """
    waiting = (
        select(C.c.tenant_id, M.c.id)
        .join(M, (M.c.conversation_id == C.c.id) & (M.c.seq > C.c.handled_seq))
        .where(C.c.pending_since.is_not(None), C.c.last_seq > C.c.handled_seq, *_POSTED)
    )
    triggers = (
        select(C.c.tenant_id, M.c.id)
        .select_from(J)
        .join(MJ, (MJ.c.job_id == J.c.id) & (MJ.c.status == LinkStatus.TRIGGER))
        .join(M, M.c.id == MJ.c.message_id)
        .join(C, C.c.id == J.c.conversation_id)
        .where(J.c.status.in_(UNFINISHED_JOB_STATES), *_POSTED)
    )
    if one_tenant:
        waiting = waiting.where(C.c.tenant_id == bindparam("tenant_id"))
        triggers = triggers.where(C.c.tenant_id == bindparam("tenant_id"))
    both = union(waiting, triggers).subquery()
    return select(both.c.tenant_id, func.count()).group_by(both.c.tenant_id)


_PENDING_OF = _pending(one_tenant=True)
_PENDING_ALL = _pending(one_tenant=False)


@dataclass(frozen=True)
class Limits:
    """A tenant as backpressure sees it."""

    id: uuid.UUID
    name: str
    #: the tenant's own limit; None: the setting's, 0: none
    max_pending_messages: int | None


def ensure(tx: Tx, name: str) -> uuid.UUID:
    """The id of the tenant named `name`, created in `tx` if there is none."""
    found = tx.scalar(_ID_BY_NAME, {"name": name})
    if found is not None:
        return found
    try:
        with tx.begin_nested():  # a savepoint: a lost race undoes only this insert
            tenant = Tenant(name=name)
            tx.add(tenant)
            tx.flush()
            return tenant.id
    except IntegrityError:
        # A concurrent call created it first (and committed: the unique index made this
        # insert wait for it).
        found = tx.scalar(_ID_BY_NAME, {"name": name})
        if found is None:
            raise Conflict(f"tenant {name!r} was changed concurrently") from None
        return found


def tenant_id(name: str) -> uuid.UUID:
    """The id of the tenant named `name`, created now if there is none."""
    with reader() as tx:
        found = tx.scalar(_ID_BY_NAME, {"name": name})
    if found is not None:
        return found
    with transaction() as tx:
        return ensure(tx, name)


def pending(tx: Tx, tenant: uuid.UUID) -> int:
    """The tenant's pending messages now, counted exactly (O(pending work), not O(history))."""
    row = tx.connection().execute(_PENDING_OF, {"tenant_id": tenant}).first()
    return int(row[1]) if row is not None else 0


def pending_by_tenant() -> list[tuple[Limits, int]]:
    """Every tenant with its pending messages, by name: two statements in one session."""
    with reader() as tx:
        conn = tx.connection()
        counts = {t: int(n) for t, n in conn.execute(_PENDING_ALL)}
        return [(Limits(*row), counts.get(row[0], 0)) for row in conn.execute(_ALL)]


def set_max_pending(name: str, limit: int | None) -> None:
    """Give the tenant named `name` its own limit (None: the setting's; 0: none)."""
    with transaction() as tx:
        done = tx.connection().execute(
            _SET_LIMIT, {"tenant_name": name, "max_pending_messages": limit}
        )
        if not done.rowcount:
            raise TenantNotFound(name)
