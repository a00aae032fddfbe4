"""`?wait=`: wait for the reply to a posted message without holding a server thread.

The wait subscribes to the conversation's Redis channel on the process's shared asyncio
pool and wakes on `agent.responded` / `job.failed`; the database, which is the truth, is
read (in the thread pool, briefly) right after subscribing, on every wake, every
`AGENTQ_API_WAIT_RECHECK_SECONDS` and at the deadline, so a lost pub/sub message costs
at most that delay. Without Redis it only polls.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import anyio
from fastapi.concurrency import run_in_threadpool

from agentq.api.aredis import async_redis
from agentq.api.settings import api_settings
from agentq.client import WAKE_EVENTS
from agentq.ops import replies
from agentq.runtime.bus import channel
from agentq.schemas import MessageOut

log = logging.getLogger(__name__)


async def reply_to(
    message_id: uuid.UUID, conversation_id: uuid.UUID, timeout: float
) -> MessageOut | None:
    """The reply to the message, or None if there is none within `timeout` seconds.
    Raises ProviderError if the job answering it failed."""
    deadline = time.monotonic() + timeout
    recheck = api_settings().wait_recheck_seconds
    pubsub = await _subscribe(conversation_id)
    try:
        while True:
            reply = await run_in_threadpool(replies.reply_to, message_id)
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            pubsub = await _woken(pubsub, min(left, recheck))
    finally:
        if pubsub is not None:
            with anyio.CancelScope(shield=True):
                await _close(pubsub)


async def _subscribe(conversation_id: uuid.UUID) -> Any:
    pubsub = async_redis().pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel(conversation_id))
    except Exception as exc:  # noqa: BLE001 - without Redis the wait still polls
        log.warning("waiting without events: %s", type(exc).__name__)
        await _close(pubsub)
        return None
    return pubsub


async def _woken(pubsub: Any, seconds: float) -> Any:
    """Sleep until a wake event arrives or `seconds` passed; returns the pubsub, or None
    once it failed."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if pubsub is None:
            await anyio.sleep(left)
            break
        try:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        except Exception as exc:  # noqa: BLE001 - fall back to polling
            log.warning("wait lost its events: %s", type(exc).__name__)
            await _close(pubsub)
            pubsub = None
            continue
        if msg is None:
            continue
        try:
            kind = json.loads(msg["data"]).get("type")
        except (TypeError, ValueError, AttributeError):
            continue
        if kind in WAKE_EVENTS:
            break
    return pubsub


async def _close(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception:  # noqa: BLE001 - a broken connection is dropped by the pool
        log.debug("pubsub close failed", exc_info=True)
