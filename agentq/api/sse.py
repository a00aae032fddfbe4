"""A conversation's Redis channel read for a Server-Sent Events response: the one loop
shared by `/v1/conversations/{id}/stream` and the console's live view.

It yields the channel's messages as JSON while the client stays connected, and a turn
without one at least every `wait()` seconds, so that each stream runs its own checks
(a revoked key, a lease to renew) even when nothing happens; a quiet stream sends a
keep-alive comment every `heartbeat` seconds (proxies close idle connections).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Request
from redis.asyncio.client import PubSub

from agentq.api.aredis import async_redis
from agentq.runtime.bus import channel

#: the comment a quiet stream sends
KEEP_ALIVE = ": keep-alive\n\n"


def _every_second() -> float:
    return 1.0


class Listener:
    """The messages of one subscribed channel, and when the stream is due a keep-alive."""

    def __init__(self, request: Request, pubsub: PubSub, heartbeat: float) -> None:
        self._request = request
        self._pubsub = pubsub
        self._heartbeat = heartbeat
        self._quiet_since = time.monotonic()

    async def messages(
        self, wait: Callable[[], float] = _every_second
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Each message as a JSON object (others are skipped) while the client stays
        connected; None when `wait()` seconds pass without one."""
        while not await self._request.is_disconnected():
            msg = await self._pubsub.get_message(timeout=wait())
            if msg is None:
                yield None
                continue
            try:
                data = json.loads(msg["data"])
            except (TypeError, ValueError):
                continue
            if isinstance(data, dict):
                yield data

    def keep_alive(self) -> str:
        """KEEP_ALIVE when nothing was sent for `heartbeat` seconds (it counts as sent),
        else ""."""
        if time.monotonic() - self._quiet_since < self._heartbeat:
            return ""
        self.sent()
        return KEEP_ALIVE

    def sent(self) -> None:
        """The stream sent something: its quiet starts again."""
        self._quiet_since = time.monotonic()


@asynccontextmanager
async def listening(
    request: Request, conversation_id: uuid.UUID, heartbeat: float
) -> AsyncIterator[Listener]:
    """A Listener subscribed to the conversation's channel (subscribed on entry, so that
    a replay that follows misses nothing), its connection closed on exit even when the
    stream is cancelled. Open it in the response's body, not in the route: a response
    that never starts then holds no connection of the shared pool."""
    pubsub = async_redis().pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel(conversation_id))
        yield Listener(request, pubsub, heartbeat)
    finally:
        with anyio.CancelScope(shield=True):
            await pubsub.aclose()
