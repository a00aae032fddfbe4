"""Bearer API keys: every `/v1` route needs one (see `agentq keys create`).

Two roles: a key acts (`Acting`: every route that changes something) unless its id is
listed in `AGENTQ_READ_ONLY_KEYS` (or its first name, `AGENTQ_CONSOLE_READ_ONLY_KEYS`),
in which case it only reads (`Caller`) and every acting route answers 403 before it
looks at the body or the ids. The console applies the same list to the same keys.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentq.api.problems import ReadOnlyKey, Unauthorized
from agentq.api.settings import api_settings
from agentq.ops.keys import Principal, is_active, verify

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API key from `agentq keys create`.")


async def principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; 401 without a valid key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API key is needed: Authorization: Bearer <key>")
    found = await _verify(credentials.credentials)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    return found


#: lookups under way, by key: concurrent requests with one key share one
_inflight: dict[str, asyncio.Future[Principal | None]] = {}


async def _verify(key: str) -> Principal | None:
    """The key's principal, with one database lookup for all the requests that ask at
    once: a burst of one tenant's requests waits on one lookup instead of taking the
    thread pool from everyone else's. Nothing is cached: a key revoked before a lookup
    starts is refused."""
    pending = _inflight.get(key)
    if pending is not None:
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this request was cancelled, not the lookup it waited on
            # The request that looked up went away (its client left): look up anew.
            return await _verify(key)
    future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
    _inflight[key] = future
    try:
        found = await run_in_threadpool(verify, key)
    except Exception as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no warning when no other request waited
        raise
    except BaseException:
        future.cancel()
        raise
    else:
        future.set_result(found)
        return found
    finally:
        if _inflight.get(key) is future:
            del _inflight[key]


Caller = Annotated[Principal, Depends(principal)]


async def acting(who: Caller, request: Request) -> Principal:
    """The caller of a route that changes something: 403 for a read-only key."""
    if api_settings().read_only(who.key_id):
        raise ReadOnlyKey(
            f"{request.method} {request.url.path} changes something, and this API key "
            f"({who.key_id}) is read-only: its id is listed in AGENTQ_READ_ONLY_KEYS "
            "(or AGENTQ_CONSOLE_READ_ONLY_KEYS); it may only read"
        )
    return who


#: the caller of a route that changes something (a read-only key answers 403)
Acting = Annotated[Principal, Depends(acting)]


async def still_valid(who: Principal) -> bool:
    """Whether the caller's key is still unrevoked (a long-lived stream asks now and
    then). A failed lookup counts as valid: the next one decides."""
    try:
        return await run_in_threadpool(is_active, who.key_id)
    except Exception as exc:  # noqa: BLE001 - the database is away: ask again later
        log.warning("key re-check failed: %s", type(exc).__name__)
        return True
