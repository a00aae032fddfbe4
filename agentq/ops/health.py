"""Readiness: do the database and Redis answer? (`/readyz`, and operators' probes)."""

from __future__ import annotations

from agentq.runtime.redis import get_redis
from agentq.store import stats


def readiness() -> dict[str, str]:
    """`ok` or the error's class name for `database` and `redis`; never raises."""
    checks: dict[str, str] = {}
    try:
        stats.ping()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
        checks["database"] = type(exc).__name__
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = type(exc).__name__
    return checks
