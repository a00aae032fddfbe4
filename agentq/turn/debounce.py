"""Debounce: when a conversation's pending messages become due.

A job is due `debounce` seconds after the LAST pending message, but never later than
`max_wait` seconds after the FIRST. The window lives in the database
(`conversations.pending_since` and `last_message_at`, written in the message's own
transaction), so it survives any loss of Redis; the timer that acts on it is
`agentq.runtime.timers`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from agentq.config import get_settings


class Window(Protocol):
    """A conversation's debounce window: a row with these columns."""

    @property
    def settings(self) -> dict[str, Any] | None: ...
    @property
    def pending_since(self) -> datetime | None: ...
    @property
    def last_message_at(self) -> datetime | None: ...


def window(settings: dict[str, Any] | None) -> tuple[float, float]:
    """(debounce, max_wait) in seconds for a conversation's settings, else the defaults."""
    s = get_settings()
    settings = settings or {}
    debounce = float(settings.get("debounce_seconds", s.debounce_seconds))
    max_wait = float(settings.get("max_wait_seconds", s.max_wait_seconds))
    return debounce, max(max_wait, debounce)


def due_at(conv: Window) -> datetime | None:
    """When the conversation's pending messages are due; None when nothing is pending."""
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
