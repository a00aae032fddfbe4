"""Timers: when a debounce window closes, and when an agent's parked conversations are
looked at again.

- **Debounce windows** live in one Redis sorted set, `<prefix>:timers:due`: a
  conversation's id scored by its window's due time. A `Scheduler` runs in every process
  that works the control queue (started by `agentq.worker`): each of its `LOOPS` threads
  sleeps until the earliest due time and takes what is due, at most `TAKE` at once, in
  one atomic script (`take_due.lua`), then fires them in one transaction. A crowd of
  windows closing together is thus fired by all the loops of all processes at once, a
  few windows a transaction, instead of by one Celery task each. A window due sooner
  than a loop's next look (`POLL`) is sent as its own `agentq.dispatch` task instead.
- **An agent's check** (`agentq.wake_agent`): one countdown task, at most one armed per
  agent (a Redis key), for all the conversations parked at its limits.

What they stand for lives in the database (the window, `agentq.turn.debounce`; the parked
jobs), so a lost timer (Redis flushed, a process killed holding what it took) only delays
work until the reconciler re-drives it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agentq.clock import utcnow
from agentq.runtime import broker
from agentq.runtime.redis import get_redis, key

log = logging.getLogger(__name__)

#: how long an agent check's key outlives its due time, so a lost check does not block new
#: ones long
TIMER_SLACK_SECONDS = 30.0
#: the scheduler's longest sleep: a window armed by another process, due before the time
#: its loop sleeps to, is seen this late at most. Windows due sooner go as their own task.
POLL = 0.05
#: windows one loop takes at once: small, so that the loops of all processes share a crowd
TAKE = 8
#: loops a process runs: their round trips to the database overlap
LOOPS = 4

_TAKE_DUE = (Path(__file__).parent / "take_due.lua").read_text()
#: set when this process arms a window, so that its own loop looks again at once
_nudge = threading.Event()


def _due_key() -> str:
    return key("timers", "due")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def arm(conversation_id: uuid.UUID | str, due: datetime) -> bool:
    """Make sure the conversation's window is fired at or soon after `due`.

    A window already armed is left alone: due times only move later, and a window fired
    early is armed again. Returns whether this call armed it. Best effort: if Redis is
    unreachable, the reconciler re-drives the conversation.
    """
    delay = (due - utcnow()).total_seconds()
    try:
        if not get_redis().zadd(_due_key(), {str(conversation_id): _ms(due)}, nx=True):
            return False
        if delay < POLL:
            broker.send(broker.DISPATCH, conversation_id, countdown=delay)
        else:
            _nudge.set()
        return True
    except Exception as exc:  # noqa: BLE001 - the DB holds the window; reconciler re-drives
        log.warning("debounce timer not armed for %s: %s", conversation_id, type(exc).__name__)
        return False


def disarm(conversation_id: uuid.UUID | str) -> None:
    """Forget the window's timer; call before re-reading the database for late arrivals
    (a message committed after this finds no timer and arms its own)."""
    try:
        get_redis().zrem(_due_key(), str(conversation_id))
    except Exception as exc:  # noqa: BLE001
        log.warning("debounce timer not cleared for %s: %s", conversation_id, type(exc).__name__)


def armed(conversation_id: uuid.UUID | str) -> datetime | None:
    """When the conversation's armed window is due, or None if none is armed."""
    score = get_redis().zscore(_due_key(), str(conversation_id))
    return None if score is None else datetime.fromtimestamp(score / 1000, tz=utcnow().tzinfo)


def take_due(limit: int = TAKE) -> tuple[list[str], float | None]:
    """Take (disarm) up to `limit` windows due now, oldest first: the caller must fire
    them. Returns their conversation ids and when the next armed window is due (epoch
    seconds; None if none is)."""
    script = get_redis().register_script(_TAKE_DUE)
    taken, nxt = script(keys=[_due_key()], args=[_ms(utcnow()), limit])
    ids = [t.decode() if isinstance(t, bytes) else str(t) for t in taken]
    return ids, None if nxt is None else float(nxt) / 1000


class Scheduler:
    """The loops that fire due windows (see the module's docstring): `loops` daemon
    threads, each taking its own windows, so that a crowd's database round trips overlap
    instead of queueing behind one another.

    `fire` gets the conversation ids taken, disarmed: it must dispatch each (a window it
    loses is left to the reconciler)."""

    def __init__(
        self,
        fire: Callable[[list[str]], object],
        *,
        poll: float = POLL,
        take: int = TAKE,
        loops: int = LOOPS,
    ) -> None:
        self.fire, self.poll, self.take, self.loops = fire, poll, take, loops
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Scheduler:
        for i in range(self.loops):
            thread = threading.Thread(target=self.run, name=f"agentq-timers-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        _nudge.set()
        for thread in self._threads:
            thread.join(timeout)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                taken, nxt = take_due(self.take)
            except Exception as exc:  # noqa: BLE001 - Redis away: windows wait in the DB
                log.warning("timer loop: due windows not read: %s", type(exc).__name__)
                self._stop.wait(1.0)
                continue
            if taken:
                try:
                    self.fire(taken)
                except Exception:  # noqa: BLE001 - the loop outlives any one batch
                    log.exception("timer loop: a batch of %d windows failed", len(taken))
                continue
            wait = self.poll
            if nxt is not None:
                wait = min(max(nxt - utcnow().timestamp(), 0.0), self.poll)
            _nudge.wait(wait)
            _nudge.clear()


def _check_key(agent_id: uuid.UUID | str) -> str:
    return key("agent", agent_id, "check")


def arm_agent_check(agent_id: uuid.UUID | str, delay: float) -> bool:
    """Make sure the agent's parked conversations are looked at in about `delay` seconds;
    an armed check is left alone. Returns whether a task was sent. Best effort, like
    `arm`."""
    ttl_ms = int((max(delay, 0) + TIMER_SLACK_SECONDS) * 1000)
    try:
        if not get_redis().set(_check_key(agent_id), "1", px=ttl_ms, nx=True):
            return False
        broker.send(broker.WAKE_AGENT, agent_id, countdown=delay)
        return True
    except Exception as exc:  # noqa: BLE001 - the reconciler wakes parked conversations
        log.warning("agent check not armed for %s: %s", agent_id, type(exc).__name__)
        return False


def disarm_agent_check(agent_id: uuid.UUID | str) -> None:
    """Forget the agent's check; call before looking for parked conversations."""
    try:
        get_redis().delete(_check_key(agent_id))
    except Exception as exc:  # noqa: BLE001
        log.warning("agent check not cleared for %s: %s", agent_id, type(exc).__name__)
