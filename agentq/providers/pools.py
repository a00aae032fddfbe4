"""Connection pools for HTTP providers: each call borrows a client of its own (blocking,
or async on the running loop), and idle ones are kept for the next call."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

#: guards the re-setup of pools in a forked child; itself re-made in every child
_fork_lock = threading.Lock()


def _new_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_fork_lock)


class ClientPool:
    """Lends each blocking call an `httpx.Client` of its own, keeping idle ones (and
    their keep-alive connections) for the next calls.

    Why not one shared `httpx.Client`: httpcore 1.0's sync pool rescans every queued
    request against every connection under one lock, so hundreds of threads spend seconds
    waiting on it, and it can close a connection it has just handed to a waiting thread
    (encode/httpcore#1110: "Bad file descriptor" or a hang). A client used by one thread
    at a time has neither problem. The clients share one SSL context, which is what makes
    a client cheap (~0.3 ms instead of ~40 ms).
    """

    def __init__(self, max_active: int = 2000, max_idle: int = 200) -> None:
        self.max_active = max_active
        self.max_idle = max_idle
        self._ssl: Any = None
        self._setup()

    def _setup(self) -> None:
        # In a forked child the parent's clients, sockets and (maybe held) locks are not
        # ours: start afresh without touching them. The pid goes last, so that a thread
        # that sees it never sees the parent's lock.
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_active)
        self._idle: list[httpx.Client] = []
        self._pid = os.getpid()

    def ssl_context(self) -> Any:
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            return self._ssl

    @contextmanager
    def client(self, wait: float) -> Iterator[httpx.Client]:
        """A client for the duration of the block; waits up to `wait` seconds for one of
        the `max_active` slots, else raises `httpx.PoolTimeout`."""
        if self._pid != os.getpid():
            with _fork_lock:
                if self._pid != os.getpid():
                    self._setup()
        slots = self._slots
        if not slots.acquire(timeout=wait):
            raise httpx.PoolTimeout(f"all {self.max_active} connections busy")
        try:
            with self._lock:
                client = self._idle.pop() if self._idle else None  # LIFO: the warmest
            if client is None:
                client = self._new_client()
            try:
                yield client
            finally:
                self._give_back(client)
        finally:
            slots.release()

    def _new_client(self) -> httpx.Client:
        # A few connections so that calls to several endpoints keep theirs alive.
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        return httpx.Client(verify=self.ssl_context(), limits=limits, follow_redirects=False)

    def _give_back(self, client: httpx.Client) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(client)
                return
        client.close()

    def close(self) -> None:
        """Close the idle clients; clients lent out are closed or kept when returned."""
        if self._pid != os.getpid():
            return
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class _LoopClients:
    """One event loop's share of an `AsyncClientPool`."""

    def __init__(self, max_active: int) -> None:
        self.slots = asyncio.Semaphore(max_active)
        self.idle: list[httpx.AsyncClient] = []
        #: clients being closed in the background (a reference keeps the task alive)
        self.closing: set[asyncio.Task[None]] = set()


class AsyncClientPool:
    """Lends each async call an `httpx.AsyncClient` of its own, per event loop (a client
    belongs to the loop that first used it), keeping up to `max_idle` idle ones with their
    keep-alive connections; at most `max_active` calls per loop hold one at a time.

    Why not one shared AsyncClient: its connection pool (httpcore 1.0) rescans every
    waiting request against every connection on each change, which costs seconds at a few
    thousand calls in flight (2,000 calls of 5 s against the fake LLM on 2 cores: 11.9 s
    through one client, 10.0 s this way). Thread-safe and fork-safe: a child never uses
    its parent's clients.
    """

    def __init__(self, max_active: int, max_idle: int, ssl_context: Callable[[], Any]) -> None:
        self.max_active = max_active
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients]
        self._loops = weakref.WeakKeyDictionary()
        self._pid = os.getpid()

    def _clients(self) -> _LoopClients:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pid != os.getpid():
                self._loops = weakref.WeakKeyDictionary()
                self._pid = os.getpid()
            # A client's connections refer to its loop, so its entry outlives the loop:
            # drop those of closed loops (their connections cannot be used any more).
            for old in [lp for lp in self._loops if lp.is_closed()]:
                del self._loops[old]
            clients = self._loops.get(loop)
            if clients is None:
                clients = self._loops[loop] = _LoopClients(self.max_active)
            return clients

    @asynccontextmanager
    async def client(self, wait: float) -> AsyncIterator[httpx.AsyncClient]:
        """A client for the duration of the block; waits up to `wait` seconds for one of
        the `max_active` slots, else raises `httpx.PoolTimeout`."""
        clients = self._clients()
        if clients.slots.locked():
            try:
                await asyncio.wait_for(clients.slots.acquire(), wait)
            except TimeoutError:
                raise httpx.PoolTimeout(f"all {self.max_active} connections busy") from None
        else:
            await clients.slots.acquire()  # free: returns at once
        try:
            client = clients.idle.pop() if clients.idle else None  # LIFO: the warmest
            if client is None:
                # A few connections so that calls to several endpoints keep theirs alive.
                client = httpx.AsyncClient(
                    verify=self._ssl(),
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
                    follow_redirects=False,
                )
            try:
                yield client
            finally:
                # No await here: this also runs in a cancelled task.
                if len(clients.idle) < self.max_idle and not client.is_closed:
                    clients.idle.append(client)
                else:
                    task = asyncio.ensure_future(client.aclose())
                    clients.closing.add(task)
                    task.add_done_callback(clients.closing.discard)
        finally:
            clients.slots.release()

    async def aclose(self) -> None:
        """Close the running loop's idle clients; clients lent out are kept when returned."""
        loop = asyncio.get_running_loop()
        with self._lock:
            clients = self._loops.get(loop) if self._pid == os.getpid() else None
        if clients is None:
            return
        idle, clients.idle = clients.idle, []
        for client in idle:
            await client.aclose()

    def forget(self) -> None:
        """Drop every loop's idle clients without awaiting them (from `close`, which may
        run on no loop): calls in flight keep theirs; later calls make new ones."""
        with self._lock:
            self._loops = weakref.WeakKeyDictionary()


# -- the provider ---------------------------------------------------------------------------
