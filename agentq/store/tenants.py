"""The `tenants` table: a tenant by name, created the first time it is named.

The CLI and `agentq.Client` act for a tenant named by the caller (default: "default");
API keys name theirs when created. Concurrent first uses of one name share one tenant.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from agentq.errors import Conflict
from agentq.store.models import Tenant
from agentq.store.session import Tx, reader, transaction

#: the id of the tenant named :name
_ID_BY_NAME = select(Tenant.id).where(Tenant.name == bindparam("name"))


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
