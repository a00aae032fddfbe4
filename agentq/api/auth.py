"""Bearer API keys: every `/v1` route needs one (see `agentq keys create`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentq.api.problems import Unauthorized
from agentq.ops.keys import Principal, is_active, verify

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False, description="An API key from `agentq keys create`.")


async def principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from `Authorization: Bearer <key>`; 401 without a valid key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API key is needed: Authorization: Bearer <key>")
    found = await run_in_threadpool(verify, credentials.credentials)
    if found is None:
        raise Unauthorized("unknown or revoked API key")
    return found


Caller = Annotated[Principal, Depends(principal)]


async def still_valid(who: Principal) -> bool:
    """Whether the caller's key is still unrevoked (a long-lived stream asks now and
    then). A failed lookup counts as valid: the next one decides."""
    try:
        return await run_in_threadpool(is_active, who.key_id)
    except Exception as exc:  # noqa: BLE001 - the database is away: ask again later
        log.warning("key re-check failed: %s", type(exc).__name__)
        return True
