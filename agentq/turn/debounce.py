"""Debounce: when a conversation's pending messages become due.

The window lives in the database (`conversations.pending_since` and `last_message_at`,
written in the message's own transaction), so it survives any loss of Redis. Redis holds
only the timer: one armed `agentq.dispatch` countdown task a conversation, marked by a key.
A timer that fires early (more messages came) re-arms itself for the new due time; a lost
timer (Redis flushed, worker killed) is replaced by the reconciler, which re-drives every
conversation whose due time is past.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from agentq.config import get_settings
from agentq.runtime import broker
from agentq.runtime.redis import get_redis, key
from agentq.store.models import utcnow

log = logging.getLogger(__name__)

#: how long a timer key outlives its due time, so a lost timer does not block new ones long
TIMER_SLACK_SECONDS = 30.0


class Window(Protocol):
    """A conversation's debounce window: a Conversation, or a row with these columns."""

    settings: dict[str, Any] | None
    pending_since: datetime | None
    last_message_at: datetime | None


def window(settings: dict[str, Any] | None) -> tuple[float, float]:
    """(debounce, max_wait) in seconds for a conversation's settings, else the defaults."""
    s = get_settings()
    settings = settings or {}
    debounce = float(settings.get("debounce_seconds", s.debounce_seconds))
    max_wait = float(settings.get("max_wait_seconds", s.max_wait_seconds))
    return debounce, max(max_wait, debounce)


def due_at(conv: Window) -> datetime | None:
    """`debounce` after the last pending message, never later than `max_wait` after the
    first; None when nothing is pending."""
    if conv.pending_since is None or conv.last_message_at is None:
        return None
    return due(conv.settings, conv.pending_since, conv.last_message_at)


def due(
    settings: dict[str, Any] | None, pending_since: datetime, last_message_at: datetime
) -> datetime:
    """`due_at` for a conversation's settings and window."""
    debounce, max_wait = window(settings)
    return min(
        last_message_at + timedelta(seconds=debounce), pending_since + timedelta(seconds=max_wait)
    )


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
