"""Where LLM calls run: one event loop a process, in a background thread.

A call on the loop can be cancelled for real (cancelling its task closes the HTTP request),
and one process can hold thousands of them. Beside the loop, two threads look after the
calls in flight:

- the watcher: follows the cancel channel and stops the calls a conversation cancelled
  (interrupt, rollback) or an operator did (a stopped agent); every `token_flush_seconds`
  it publishes streamed tokens in batches and stops calls past their attempt's deadline;
- the heartbeat (every third of the job lease): renews, in one statement and one Redis
  round trip, the lease and the agent slot of every call in flight, so a live worker is
  never presumed dead however long its provider takes, and a dead one's jobs are claimed
  again within one lease. A call whose claim is gone (finished, cancelled, taken over) is
  stopped.

The task thread that asked for a call waits for it to have really ended (its connection
closed) before it returns: an agent's slot is held until then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.events import AGENT_TOKEN
from agentq.providers import ChatResult
from agentq.runtime import limits, signals
from agentq.runtime.bus import channel
from agentq.runtime.redis import get_redis
from agentq.store import jobs
from agentq.store.session import transaction

log = logging.getLogger(__name__)


class Stopped(Exception):  # a call stopped early, not an error of the caller's
    """The call was stopped before it answered; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: why a call stops: the conversation cancelled its job
CANCELLED = "cancelled"
#: its claim is no longer current (the job finished, or another worker took it over)
STALE = "stale"
#: its attempt passed `LLM_ATTEMPT_DEADLINE`
DEADLINE = "deadline"


@dataclass(eq=False)
class Flight:
    """A call in flight, as the watcher and the heartbeat see it."""

    job_id: uuid.UUID
    token: int
    agent_id: uuid.UUID
    conversation_id: uuid.UUID
    #: monotonic time past which it is stopped
    deadline: float
    stop_reason: str | None = None
    task: asyncio.Task[ChatResult] | None = None
    #: streamed text not published yet, and what was published before it
    pending: list[str] = field(default_factory=list)
    seq: int = 0
    offset: int = 0
    restarted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def claim(self) -> tuple[uuid.UUID, int]:
        return self.job_id, self.token

    def on_token(self, text: str) -> None:
        if text:
            with self.lock:
                self.pending.append(text)

    def restart(self) -> None:
        """The provider call starts over (a retry after a broken stream): what was streamed
        is void; the next record says so (`restart`) and starts again at offset 0."""
        with self.lock:
            if self.offset or self.pending:
                self.pending.clear()
                self.offset = 0
                self.restarted = True


class Calls:
    """The process's call loop and its two keepers; `calls()` gives this process's one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.flights: dict[tuple[uuid.UUID, int], Flight] = {}
        self._lock = threading.Lock()
        self._publishing = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._run_loop, name="agentq-calls", daemon=True).start()
        threading.Thread(target=self._watch, name="agentq-call-watch", daemon=True).start()
        threading.Thread(target=self._beat, name="agentq-heartbeat", daemon=True).start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # -- the task thread's side -----------------------------------------------------------

    def run(
        self, flight: Flight, call: Callable[[Callable[[str], None]], Awaitable[ChatResult]]
    ) -> ChatResult:
        """Run `call(on_token)` on the loop and wait until it has ended; its result, or
        `Stopped`, or what it raised. Its streamed tokens are all published on return."""

        async def tracked() -> ChatResult:
            flight.task = asyncio.current_task()  # type: ignore[assignment]
            if flight.stop_reason is not None:  # stopped before it began
                raise asyncio.CancelledError
            if await asyncio.to_thread(_cancelled_already, flight):
                flight.stop_reason = CANCELLED  # cancelled before the watcher knew of it
                raise asyncio.CancelledError
            return await call(flight.on_token)

        with self._lock:
            self.flights[flight.claim] = flight
        try:
            future = asyncio.run_coroutine_threadsafe(tracked(), self.loop)
            try:
                return future.result()
            except (concurrent.futures.CancelledError, asyncio.CancelledError):
                raise Stopped(flight.stop_reason or CANCELLED) from None
        finally:
            with self._lock:
                self.flights.pop(flight.claim, None)
            self._publish([flight])

    def stop(self, flight: Flight, reason: str) -> None:
        """Stop the call (from any thread); its task thread sees `Stopped(reason)`."""
        if flight.stop_reason is None:
            flight.stop_reason = reason
            log.info("job %s: LLM call stopped (%s)", flight.job_id, reason)
        task = flight.task
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)

    def in_flight(self) -> list[Flight]:
        with self._lock:
            return list(self.flights.values())

    # -- the watcher ----------------------------------------------------------------------

    def _watch(self) -> None:
        pubsub = None
        while not self._closed.is_set():
            tick = get_settings().token_flush_seconds
            try:
                if pubsub is None:
                    pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(signals.channel())
                    first = pubsub.get_message(timeout=1.0)  # the confirmation, usually
                    if first is not None:
                        self._cancel(first["data"])
                    # A signal sent while we were not subscribed is still in its key.
                    for f in self.in_flight():
                        if signals.is_cancelled(f.job_id, f.token):
                            self.stop(f, CANCELLED)
                message = pubsub.get_message(timeout=tick)
                while message is not None:
                    self._cancel(message["data"])
                    message = pubsub.get_message(timeout=0)
                flights = self.in_flight()
                self._publish(flights)
                now = time.monotonic()
                for f in flights:
                    if now > f.deadline:
                        self.stop(f, DEADLINE)
            except Exception as exc:  # noqa: BLE001 - Redis restarts: subscribe again
                log.warning("call watcher reconnecting: %s", type(exc).__name__)
                pubsub = None
                self._closed.wait(1.0)

    def _cancel(self, data: bytes | str) -> None:
        claim = signals.parse(data)
        with self._lock:
            flight = self.flights.get(claim) if claim else None
        if flight is not None:
            self.stop(flight, CANCELLED)

    def _publish(self, flights: list[Flight]) -> None:
        """Publish the streamed text of `flights` not published yet, one message each.
        One publisher at a time: a call's batches go out in order, and all of them before
        its task thread goes on to write the reply (and `agent.responded`)."""
        with self._publishing:
            self._publish_now(flights)

    def _publish_now(self, flights: list[Flight]) -> None:
        batches: list[tuple[Flight, dict[str, Any]]] = []
        for f in flights:
            with f.lock:
                if not f.pending:
                    continue
                text, f.pending = "".join(f.pending), []
                f.seq += 1
                payload: dict[str, Any] = {
                    "job_id": str(f.job_id),
                    "seq": f.seq,
                    "offset": f.offset,
                    "text": text,
                }
                if f.restarted:  # the provider call started over: the text so far is void
                    payload["restart"] = True
                    f.restarted = False
                f.offset += len(text)
            batches.append((f, payload))
        if not batches:
            return
        try:
            pipe = get_redis().pipeline(transaction=False)
            now = utcnow().isoformat()
            for f, payload in batches:
                message = {
                    "id": None,
                    "type": AGENT_TOKEN,
                    "conversation_id": str(f.conversation_id),
                    "payload": payload,
                    "created_at": now,
                }
                pipe.publish(channel(f.conversation_id), json.dumps(message))
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - live tokens are best effort; the reply is stored
            log.warning("tokens not published: %s", type(exc).__name__)

    # -- the heartbeat --------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._closed.wait(get_settings().job_lease_seconds / 3):
            flights = [f for f in self.in_flight() if f.stop_reason is None]
            if flights:
                self.renew(flights)

    def renew(self, flights: list[Flight]) -> None:
        """Renew the leases and slots of `flights`; stop those whose claim is gone."""
        lease = timedelta(seconds=get_settings().job_lease_seconds)
        try:
            with transaction(durable=False) as tx:
                claims = [f.claim for f in flights]
                renewed = jobs.renew(tx, claims, utcnow() + lease)
        except Exception as exc:  # noqa: BLE001 - the next beat tries again within the lease
            log.warning("leases not renewed: %s", type(exc).__name__)
            return
        try:
            limits.extend([(f.agent_id, f.job_id) for f in flights if f.claim in renewed])
        except Exception as exc:  # noqa: BLE001 - the reconciler restores lost slots
            log.warning("agent slots not renewed: %s", type(exc).__name__)
        for f in flights:
            if f.claim not in renewed:
                self.stop(f, STALE)


def _cancelled_already(flight: Flight) -> bool:
    try:
        return signals.is_cancelled(flight.job_id, flight.token)
    except Exception as exc:  # noqa: BLE001 - Redis down: the watcher and heartbeat still stop it
        log.warning("cancel signal not read: %s", type(exc).__name__)
        return False


_calls: Calls | None = None
_calls_pid = 0
_calls_lock = threading.Lock()


def calls() -> Calls:
    """This process's call loop (a new one after a fork)."""
    global _calls, _calls_pid
    with _calls_lock:
        if _calls is None or _calls_pid != os.getpid():
            _calls, _calls_pid = Calls(), os.getpid()
        return _calls
