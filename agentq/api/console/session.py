"""Who is looking at the console, and what they may do.

Keys, the same as the API's:

- the operator key (`AGENTQ_CONSOLE_OPERATOR_KEY`): every tenant, and may act;
- the viewer key (`AGENTQ_CONSOLE_VIEWER_KEY`): every tenant, read-only;
- a tenant's API key (`agentq keys create`): that tenant only, and may act, unless its
  id is listed in `AGENTQ_READ_ONLY_KEYS` (or `AGENTQ_CONSOLE_READ_ONLY_KEYS`), which
  makes it read-only over `/v1` as well (`agentq.api.auth.Acting`).

The login form takes a key and opens a session: a random token in an HttpOnly,
SameSite=Strict cookie scoped to /console, its sha256 naming the session in Redis for
SESSION_SECONDS (the key itself is kept nowhere). Every request checks the session
again: a tenant key revoked, or an operator key changed, ends its sessions at once;
logging out deletes the session. Every POST needs the session's CSRF token (a header)
and, when the browser sends one, an Origin of this host. Keys are never logged, never
shown, and compared in constant time.

Failed logins are counted in Redis in fixed windows (AGENTQ_CONSOLE_LOGIN_WINDOW_SECONDS),
over all addresses and, when the caller passes it, per client address; past either limit
a login is refused (429 with Retry-After, `TooManyAttempts`) before its key is looked at,
so a guesser gets a few tries a minute however fast the server answers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

from fastapi import Request

from agentq.api.problems import TooManyAttempts
from agentq.api.settings import api_settings
from agentq.ops import keys
from agentq.runtime.redis import get_redis, key

log = logging.getLogger(__name__)

#: the cookie that holds the session token
COOKIE = "agentq_console"
#: the header the CSRF token comes in
CSRF_HEADER = "X-CSRF-Token"
#: how long a session lasts after its login
SESSION_SECONDS = 12 * 3600
#: failed-login counters outlive their window by this much, so that an attempt that
#: takes long still gives its count back to the counter it took it from
KEEP_SECONDS = 60

OPERATOR, VIEWER, TENANT = "operator", "viewer", "tenant"


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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _matches(given: str, secret: str | None) -> bool:
    return bool(secret) and hmac.compare_digest(given.encode(), str(secret).encode())


def _operator_keys() -> dict[str, str | None]:
    s = api_settings()
    return {
        OPERATOR: s.console_operator_key.get_secret_value() if s.console_operator_key else None,
        VIEWER: s.console_viewer_key.get_secret_value() if s.console_viewer_key else None,
    }


def _read_only(key_id: str) -> bool:
    return api_settings().read_only(key_id)


def _session_key(token: str) -> str:
    return key("console", "session", _digest(token))


def _window() -> tuple[str, int]:
    """The current failed-login window's name (its length and number) and the seconds
    left in it."""
    length = api_settings().console_login_window_seconds
    now = int(time.time())
    return f"{length}s-{now // length}", length - now % length


def _failure_keys(window: str, client: str | None) -> list[str]:
    """The failed-login counters of a login from `client`: everyone's, and the address's
    own when it is known."""
    counters = [key("console", "login-failures", window)]
    if client:
        counters.append(key("console", "login-failures", window, _digest(client)[:32]))
    return counters


def _limits() -> list[int]:
    s = api_settings()
    return [s.console_login_failures_total, s.console_login_failures_per_client]


def _attempt(client: str | None) -> list[str]:
    """Count a login attempt from `client` in the current window before its key is
    looked at (so that concurrent guesses cannot all pass a check before any is
    counted) and return its counters; past a limit, give the count back and raise
    TooManyAttempts. The counts are of attempts that reached the key check."""
    window, left = _window()
    counters = _failure_keys(window, client)
    redis = get_redis()
    with redis.pipeline(transaction=False) as pipe:
        for counter in counters:
            pipe.incr(counter)
            pipe.expire(counter, left + KEEP_SECONDS)
        counts = pipe.execute()[::2]
    for i, (count, limit) in enumerate(zip(counts, _limits(), strict=False)):
        if count > limit:
            _give_back(counters)
            whose = "all addresses together" if i == 0 else "this address"
            # once a window and counter: the operator hears of a guesser, not of each try
            if redis.set(counters[i] + ":told", 1, nx=True, ex=left + KEEP_SECONDS):
                log.warning(
                    "console: %d failed logins from %s; logins from there refused for %d s",
                    limit,
                    "all addresses together" if i == 0 else client,
                    left,
                )
            raise TooManyAttempts(
                f"too many failed console logins from {whose} (at most {limit} in "
                f"{api_settings().console_login_window_seconds} s); try again in {left} s",
                left,
            )
    return counters


def _give_back(counters: list[str]) -> None:
    # The window may have ended meanwhile: a counter given back after it expired must
    # expire too, not stay at -1.
    ttl = api_settings().console_login_window_seconds + KEEP_SECONDS
    with get_redis().pipeline(transaction=False) as pipe:
        for counter in counters:
            pipe.decr(counter)
            pipe.expire(counter, ttl)
        pipe.execute()


def _encodes(raw: str) -> bool:
    """Whether `raw` is text a key could be (JSON may carry lone surrogates, which UTF-8
    cannot encode): such a login is a wrong key, not a server error."""
    try:
        raw.encode()
    except UnicodeEncodeError:
        return False
    return True


def login(raw: str, client: str | None = None) -> str | None:
    """A new session's token for the key `raw`, or None for an unknown or revoked key.
    `client` is the caller's address: past AGENTQ_CONSOLE_LOGIN_FAILURES_PER_CLIENT failed
    logins from it in a window (or AGENTQ_CONSOLE_LOGIN_FAILURES_TOTAL from all), this
    raises TooManyAttempts before the key is looked at."""
    counters = _attempt(client)
    try:
        token = _login(raw)
    except Exception:  # the database or Redis failed, not the caller's key
        _give_back(counters)
        raise
    if token is not None:  # a login that succeeds is no failure
        _give_back(counters)
    return token


def _login(raw: str) -> str | None:
    if not raw or len(raw) > 200 or not _encodes(raw):
        return None
    session: dict[str, str | None]
    operators = _operator_keys()
    kind = next((k for k, secret in operators.items() if _matches(raw, secret)), None)
    if kind is not None:
        session = {"kind": kind, "fingerprint": _digest(raw), "key_id": None, "tenant_id": None}
    else:
        found = keys.verify(raw)
        if found is None:
            return None
        session = {
            "kind": TENANT,
            "fingerprint": None,
            "key_id": str(found.key_id),
            "tenant_id": str(found.tenant_id),
        }
    session["csrf"] = secrets.token_urlsafe(24)
    token = secrets.token_urlsafe(32)
    get_redis().set(_session_key(token), json.dumps(session), ex=SESSION_SECONDS)
    return token


def logout(token: str | None) -> None:
    if token:
        get_redis().delete(_session_key(token))


def resolve(token: str) -> Viewer | None:
    """The viewer of a session token, or None: no such session, or its key no longer
    valid (revoked, or the operator key changed)."""
    if not token or len(token) > 100:
        return None
    raw = get_redis().get(_session_key(token))
    if raw is None:
        return None
    s = json.loads(raw)
    if s["kind"] in (OPERATOR, VIEWER):
        secret = _operator_keys()[s["kind"]]
        if not secret or not hmac.compare_digest(_digest(secret), s["fingerprint"]):
            return None
        label = "operator" if s["kind"] == OPERATOR else "operator (read-only)"
        return Viewer(label, None, s["kind"] == OPERATOR, s["csrf"])
    if not keys.is_active(uuid.UUID(s["key_id"])):
        return None
    return Viewer("tenant", uuid.UUID(s["tenant_id"]), not _read_only(s["key_id"]), s["csrf"])


def viewer_of(request: Request) -> Viewer | None:
    """The viewer of a request's session cookie (None: log in first)."""
    token = request.cookies.get(COOKIE)
    return resolve(token) if token else None


def same_origin(request: Request) -> bool:
    """A browser's POST from this console (or a client that sends no Origin at all)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def csrf_ok(request: Request, viewer: Viewer) -> bool:
    given = request.headers.get(CSRF_HEADER) or ""
    return hmac.compare_digest(given.encode(), viewer.csrf.encode())
