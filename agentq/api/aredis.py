"""The API's asyncio Redis client: one connection pool a process (and event loop), shared
by every waiting post, every SSE stream and the per-tenant caps. Waiting on Redis holds
no server thread."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis

from agentq.api.settings import api_settings
from agentq.config import get_settings

#: how long a caller waits for a free connection before failing
POOL_TIMEOUT_SECONDS = 10

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def async_redis() -> aioredis.Redis:
    """The shared client of this event loop for the configured Redis (connections belong
    to the loop that opened them: one pool a loop, which under uvicorn is one a process)."""
    url = get_settings().redis_url
    loop = asyncio.get_running_loop()
    by_url = _clients.setdefault(loop, {})
    client = by_url.get(url)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=api_settings().redis_max_connections,
            timeout=POOL_TIMEOUT_SECONDS,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
        )
        client = by_url[url] = aioredis.Redis(connection_pool=pool)
    return client
