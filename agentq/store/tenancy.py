"""Tenants and their API keys, and which tenant owns an agent, a conversation or a job.

The statements of the HTTP API's access control: one statement a lookup, each named for
what it gets. Only a key's sha256 is ever stored or looked up, never the key.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from agentq.clock import utcnow
from agentq.errors import Conflict
from agentq.store.models import Agent, ApiKey, Conversation, Job, Tenant
from agentq.store.session import reader, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyInfo:
    """What is stored about a key (never the key itself)."""

    id: uuid.UUID
    name: str
    prefix: str
    tenant_id: uuid.UUID
    tenant: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: when the key was last used, to the minute (None: never)
    last_used_at: datetime | None = None


# Statements built once.
#: the tenant named :name
_TENANT_BY_NAME = select(Tenant).where(Tenant.name == bindparam("name"))
#: (key id, tenant id, last used) of the unrevoked key with hash :key_hash
_KEY_BY_HASH = select(ApiKey.id, ApiKey.tenant_id, ApiKey.last_used_at).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)
#: the id of key :key_id if it is not revoked
_KEY_ACTIVE = select(ApiKey.id).where(ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None))
#: set key :key_id's last use to :now unless it was set at :stale_before or later
_TOUCH_KEY = (
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("stale_before")),
    )
    .values(last_used_at=bindparam("now"))
)
#: every key with its tenant's name, oldest first
_ALL_KEYS = (
    select(ApiKey, Tenant.name)
    .join(Tenant, Tenant.id == ApiKey.tenant_id)
    .order_by(ApiKey.created_at)
)
#: revoke key :key_id unless it is revoked already
_REVOKE_KEY = (
    update(ApiKey)
    .where(ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
#: the id of key :key_id (to tell "already revoked" from "no such key")
_KEY_EXISTS = select(ApiKey.id).where(ApiKey.id == bindparam("key_id"))
#: the tenant of conversation :id (None: no tenant)
_CONVERSATION_TENANT = select(Conversation.tenant_id).where(Conversation.id == bindparam("id"))
#: the tenant of agent :id (None: no tenant)
_AGENT_TENANT = select(Agent.tenant_id).where(Agent.id == bindparam("id"))
#: the tenant of job :id, which is its conversation's
_JOB_TENANT = (
    select(Conversation.tenant_id)
    .join(Job, Job.conversation_id == Conversation.id)
    .where(Job.id == bindparam("id"))
)
#: the ids of tenant :tenant_id's agents
_TENANT_AGENT_IDS = select(Agent.id).where(Agent.tenant_id == bindparam("tenant_id"))


def insert_api_key(tenant_name: str, name: str, prefix: str, key_hash: str) -> KeyInfo:
    """Store a key (by its hash) for the tenant named `tenant_name`, created if new."""
    with transaction() as session:
        tenant = session.scalar(_TENANT_BY_NAME, {"name": tenant_name})
        if tenant is None:
            try:
                with session.begin_nested():  # a savepoint: a lost race undoes only this
                    tenant = Tenant(name=tenant_name)
                    session.add(tenant)
                    session.flush()
            except IntegrityError:
                # A concurrent call created the tenant first (and committed: the unique
                # index made this insert wait for it): the key is that tenant's.
                tenant = session.scalar(_TENANT_BY_NAME, {"name": tenant_name})
                if tenant is None:
                    raise Conflict(f"tenant {tenant_name!r} was changed concurrently") from None
        key = ApiKey(tenant_id=tenant.id, name=name, prefix=prefix, key_hash=key_hash)
        session.add(key)
        session.flush()
        return KeyInfo(key.id, key.name, key.prefix, tenant.id, tenant.name, key.created_at)


def key_principal(key_hash: str) -> tuple[uuid.UUID, uuid.UUID, datetime | None] | None:
    """The (key id, tenant id, last use) of the unrevoked key whose sha256 is `key_hash`,
    or None."""
    with reader() as session:
        row = session.execute(_KEY_BY_HASH, {"key_hash": key_hash}).first()
    return (row[0], row[1], row[2]) if row else None


def key_active(key_id: uuid.UUID) -> bool:
    """Whether key `key_id` exists and is not revoked (one primary-key read)."""
    with reader() as session:
        return session.execute(_KEY_ACTIVE, {"key_id": key_id}).first() is not None


def touch_api_key(key_id: uuid.UUID, now: datetime, stale_before: datetime) -> None:
    """Record a use of key `key_id` at `now`, unless one at `stale_before` or later is
    recorded already. Best effort: a failure is logged, never raised."""
    try:
        with transaction() as session:
            session.connection().execute(
                _TOUCH_KEY, {"key_id": key_id, "now": now, "stale_before": stale_before}
            )
    except SQLAlchemyError as exc:
        log.warning("last use of key %s not recorded: %s", key_id, type(exc).__name__)


def list_api_keys() -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    with reader() as session:
        rows = session.execute(_ALL_KEYS).all()
        return [
            KeyInfo(
                k.id, k.name, k.prefix, k.tenant_id, t, k.created_at, k.revoked_at, k.last_used_at
            )
            for k, t in rows
        ]


def revoke_api_key(key_id: uuid.UUID) -> bool:
    """Revoke key `key_id` now (a revoked key stays revoked); False if there is no such key."""
    with transaction() as session:
        conn = session.connection()
        done = conn.execute(_REVOKE_KEY, {"key_id": key_id, "now": utcnow()})
        return (
            done.rowcount > 0 or conn.execute(_KEY_EXISTS, {"key_id": key_id}).first() is not None
        )


def conversation_tenant(conversation_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant owning the conversation; None if it has none or does not exist."""
    with reader() as session:
        return session.scalar(_CONVERSATION_TENANT, {"id": conversation_id})


def agent_tenant(agent_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant owning the agent; None if it has none or does not exist."""
    with reader() as session:
        return session.scalar(_AGENT_TENANT, {"id": agent_id})


def job_tenant(job_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant owning the job's conversation; None if it has none or the job does not exist."""
    with reader() as session:
        return session.scalar(_JOB_TENANT, {"id": job_id})


def tenant_agent_ids(tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """The ids of the tenant's agents."""
    with reader() as session:
        return set(session.scalars(_TENANT_AGENT_IDS, {"tenant_id": tenant_id}))
