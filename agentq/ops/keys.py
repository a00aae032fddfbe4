"""API keys of the HTTP API: created once and shown once, stored as a sha256 hash.

A key belongs to one tenant, and sees only that tenant's agents and conversations. Keys
are long random secrets, so a plain (unsalted) sha256 is enough to make a stolen table
useless, and it lets `verify` find the key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from agentq.clock import utcnow
from agentq.errors import InvalidInput, NotFound
from agentq.store import tenancy
from agentq.store.tenancy import KeyInfo

__all__ = [
    "KeyInfo",
    "Principal",
    "create_key",
    "hash_key",
    "is_active",
    "list_keys",
    "revoke_key",
    "verify",
]

#: every key starts with it, so that secret scanners and humans recognise one
KEY_PREFIX = "aq_"
#: random bytes in a key (256 bits: guessing one is hopeless)
KEY_BYTES = 32
#: how many characters of a key are kept in clear to tell keys apart
SHOWN_CHARS = 10
#: a key's `last_used_at` is written at most this often
USE_RESOLUTION = timedelta(minutes=1)
#: keys whose use this process recorded lately (key id -> monotonic time), so that a busy
#: key costs one write a minute, not one a request
_recorded: dict[uuid.UUID, float] = {}
_recorded_lock = threading.Lock()


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
    info = tenancy.insert_api_key(tenant_name, name, secret[:SHOWN_CHARS], hash_key(secret))
    return secret, info


def verify(key: str) -> Principal | None:
    """The principal of `key`, or None if it is unknown or revoked. Constant-time in
    the key's content: the lookup is by its hash."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = tenancy.key_principal(hash_key(key))
    if row is None:
        return None
    key_id, tenant_id, last_used = row
    _record_use(key_id, last_used)
    return Principal(key_id, tenant_id)


def _record_use(key_id: uuid.UUID, last_used: datetime | None) -> None:
    """Keep `last_used_at` to the minute: written only when it is a minute old, and by
    this process at most once a minute per key."""
    now = utcnow()
    if last_used is not None and now - last_used < USE_RESOLUTION:
        return
    tick = time.monotonic()
    with _recorded_lock:
        if tick - _recorded.get(key_id, -1e9) < USE_RESOLUTION.total_seconds():
            return
        if len(_recorded) > 10_000:
            _recorded.clear()
        _recorded[key_id] = tick
    tenancy.touch_api_key(key_id, now, now - USE_RESOLUTION)


def is_active(key_id: uuid.UUID) -> bool:
    """Whether the key still exists unrevoked (an open stream asks now and then)."""
    return tenancy.key_active(key_id)


def list_keys() -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    return tenancy.list_api_keys()


def revoke_key(key_id: uuid.UUID | str) -> None:
    """Revoke a key: it stops working at once. Revoking twice is harmless."""
    try:
        kid = uuid.UUID(str(key_id))
    except ValueError:
        raise NotFound("api key", key_id) from None
    if not tenancy.revoke_api_key(kid):
        raise NotFound("api key", key_id)
