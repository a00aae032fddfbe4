"""API keys of the HTTP API: created once and shown once, stored as a sha256 hash.

A key belongs to one tenant, and sees only that tenant's agents and conversations. Keys
are long random secrets, so a plain (unsalted) sha256 is enough to make a stolen table
useless, and it lets `verify` find the key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from agentq.errors import InvalidInput, NotFound
from agentq.store.models import ApiKey, Tenant, utcnow
from agentq.store.session import reader, transaction

#: every key starts with it, so that secret scanners and humans recognise one
KEY_PREFIX = "aq_"
#: random bytes in a key (256 bits: guessing one is hopeless)
KEY_BYTES = 32
#: how many characters of a key are kept in clear to tell keys apart
SHOWN_CHARS = 10


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


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key and its tenant."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_name(field: str, value: str) -> str:
    if not value or len(value) > 100 or not value.isprintable():
        raise InvalidInput(field, "must be 1 to 100 printable characters")
    return value


def create_key(name: str, tenant: str | None = None) -> tuple[str, KeyInfo]:
    """Create a key named `name` for tenant `tenant` (by name; created if new; default:
    a tenant named like the key). Returns the key, which is not stored and cannot be
    shown again, and what is stored about it."""
    _check_name("name", name)
    tenant_name = _check_name("tenant", tenant or name)
    secret = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    with transaction() as session:
        row = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
        if row is None:
            row = Tenant(name=tenant_name)
            session.add(row)
            session.flush()
        key = ApiKey(
            tenant_id=row.id, name=name, prefix=secret[:SHOWN_CHARS], key_hash=hash_key(secret)
        )
        session.add(key)
        session.flush()
        info = KeyInfo(key.id, key.name, key.prefix, row.id, row.name, key.created_at)
    return secret, info


def verify(key: str) -> Principal | None:
    """The principal of `key`, or None if it is unknown or revoked. Constant-time in
    the key's content: the lookup is by its hash."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    with reader() as session:
        row = session.execute(
            select(ApiKey.id, ApiKey.tenant_id).where(
                ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)
            )
        ).first()
    return Principal(row[0], row[1]) if row else None


def list_keys() -> list[KeyInfo]:
    with reader() as session:
        rows = session.execute(
            select(ApiKey, Tenant.name)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .order_by(ApiKey.created_at)
        ).all()
        return [
            KeyInfo(k.id, k.name, k.prefix, k.tenant_id, t, k.created_at, k.revoked_at)
            for k, t in rows
        ]


def revoke_key(key_id: uuid.UUID | str) -> None:
    """Revoke a key: it stops working at once. Revoking twice is harmless."""
    try:
        kid = uuid.UUID(str(key_id))
    except ValueError:
        raise NotFound("api key", key_id) from None
    with transaction() as session:
        done = session.execute(
            update(ApiKey)
            .where(ApiKey.id == kid, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if done.rowcount == 0 and session.get(ApiKey, kid) is None:  # type: ignore[attr-defined]
            raise NotFound("api key", key_id)
