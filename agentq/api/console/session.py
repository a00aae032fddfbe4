"""Who is looking at the console, and what they may do.

Keys, the same as the API's:

- the operator key (`AGENTQ_CONSOLE_OPERATOR_KEY`): every tenant, and may act;
- the viewer key (`AGENTQ_CONSOLE_VIEWER_KEY`): every tenant, read-only;
- a tenant's API key (`agentq keys create`): that tenant only, and may act, unless its
  id is listed in `AGENTQ_CONSOLE_READ_ONLY_KEYS` (comma-separated key ids).

The login form takes a key; the console keeps it in an HttpOnly, SameSite=Strict cookie
scoped to /console and checks it again at every request (a revoked key stops at once).
Every POST needs the CSRF token the pages carry (an HMAC of the key, so it needs no
server state) and, when the browser sends one, an Origin of this host. Keys are never
logged, never shown, and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from fastapi import Request

from agentq.api.settings import api_settings
from agentq.ops import keys

#: the cookie that holds the key
COOKIE = "agentq_console"
#: the header (or JSON field) the CSRF token comes in
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Viewer:
    """Who the console answers: a tenant's key holder, or an operator (tenant None)."""

    label: str
    tenant_id: uuid.UUID | None
    can_act: bool
    csrf: str

    @property
    def operator(self) -> bool:
        return self.tenant_id is None


def _csrf(key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return hmac.new(digest, b"agentq-console-csrf", hashlib.sha256).hexdigest()[:40]


def _matches(given: str, secret: str | None) -> bool:
    return bool(secret) and hmac.compare_digest(given.encode(), str(secret).encode())


def resolve(key: str) -> Viewer | None:
    """The viewer a key makes, or None for an unknown or revoked key."""
    if not key or len(key) > 200:
        return None
    s = api_settings()
    operator = s.console_operator_key.get_secret_value() if s.console_operator_key else None
    viewer = s.console_viewer_key.get_secret_value() if s.console_viewer_key else None
    if _matches(key, operator):
        return Viewer("operator", None, True, _csrf(key))
    if _matches(key, viewer):
        return Viewer("operator (read-only)", None, False, _csrf(key))
    found = keys.verify(key)
    if found is None:
        return None
    read_only = {k.strip().lower() for k in s.console_read_only_keys.split(",") if k.strip()}
    return Viewer("tenant", found.tenant_id, str(found.key_id) not in read_only, _csrf(key))


def viewer_of(request: Request) -> Viewer | None:
    """The viewer of a request's cookie (None: log in first)."""
    key = request.cookies.get(COOKIE)
    return resolve(key) if key else None


def same_origin(request: Request) -> bool:
    """A browser's POST from this console (or a client that sends no Origin at all)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def csrf_ok(request: Request, viewer: Viewer, sent: str | None) -> bool:
    given = request.headers.get(CSRF_HEADER) or sent or ""
    return hmac.compare_digest(given.encode(), viewer.csrf.encode())
