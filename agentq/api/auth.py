"""Bearer API keys: every `/v1` route needs one (see `agentq keys create`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agentq.api.problems import Unauthorized
from agentq.ops.keys import Principal, verify

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
