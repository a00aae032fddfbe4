"""Timers, each one countdown task marked by a Redis key so that at most one is armed:

- a conversation's debounce timer (`agentq.dispatch`);
- an agent's check (`agentq.wake_agent`): conversations parked at its limits are looked
  at again, once for all of them.

What they stand for lives in the database (the window, `agentq.turn.debounce`; the parked
jobs), so a lost timer (Redis flushed, worker killed) only delays work until the
reconciler re-drives it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from agentq.clock import utcnow
from agentq.runtime import broker
from agentq.runtime.redis import get_redis, key

log = logging.getLogger(__name__)

#: how long a timer key outlives its due time, so a lost timer does not block new ones long
TIMER_SLACK_SECONDS = 30.0


def _timer_key(conversation_id: uuid.UUID | str) -> str:
    return key("debounce", conversation_id)


def arm(conversation_id: uuid.UUID | str, due: datetime) -> bool:
    """Make sure a dispatch timer will fire for `conversation_id` at or before `due`.

    A timer already armed is left alone: due times only move later, and a timer that
    fires early re-arms itself. Returns whether a task was sent. Best effort:
    if Redis is unreachable the reconciler re-drives the conversation.
    """
    delay = (due - utcnow()).total_seconds()
    ttl_ms = int((max(delay, 0) + TIMER_SLACK_SECONDS) * 1000)
    try:
        armed = get_redis().set(_timer_key(conversation_id), due.isoformat(), px=ttl_ms, nx=True)
        if not armed:
            return False
        broker.send(broker.DISPATCH, conversation_id, countdown=delay)
        return True
    except Exception as exc:  # noqa: BLE001 - the DB holds the window; reconciler re-drives
        log.warning("debounce timer not armed for %s: %s", conversation_id, type(exc).__name__)
        return False


def disarm(conversation_id: uuid.UUID | str) -> None:
    """Forget the timer; call before re-reading the database for late arrivals."""
    try:
        get_redis().delete(_timer_key(conversation_id))
    except Exception as exc:  # noqa: BLE001
        log.warning("debounce timer not cleared for %s: %s", conversation_id, type(exc).__name__)


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
