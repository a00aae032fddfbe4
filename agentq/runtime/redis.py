"""Redis connections: one pool a process, renewed after fork."""

from __future__ import annotations

import os
import threading

import redis

from agentq.config import get_settings

#: Redis connections one process opens at most (agentq's own; the broker has its pool)
MAX_CONNECTIONS = 256
#: how long a caller waits for a free connection before failing
POOL_TIMEOUT_SECONDS = 20

_lock = threading.Lock()
_clients: dict[tuple[str, int], redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    """A client for `url` (default: the configured Redis), shared by this process's threads."""
    url = url or get_settings().redis_url
    key = (url, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                # Thousands of LLM calls share it: past the cap a caller waits for a free
                # connection (up to the timeout) rather than failing at once.
                pool = redis.BlockingConnectionPool.from_url(
                    url,
                    max_connections=MAX_CONNECTIONS,
                    timeout=POOL_TIMEOUT_SECONDS,
                    decode_responses=True,
                    health_check_interval=30,
                    socket_timeout=10,
                )
                client = _clients[key] = redis.Redis(connection_pool=pool)
    return client


def close_redis() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def key(*parts: object) -> str:
    """A Redis key under agentq's prefix: key("debounce", conv_id) -> "agentq:debounce:<id>"."""
    return ":".join([get_settings().redis_prefix, *map(str, parts)])
