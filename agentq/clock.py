"""The one clock agentq reads: timezone-aware UTC (tests replace it to move time)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
