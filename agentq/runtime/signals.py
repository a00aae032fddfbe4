"""Cancel signals: how a conversation tells the worker running one of its jobs to stop."""

from __future__ import annotations

import uuid

from agentq.runtime.redis import get_redis, key

#: how long a cancel signal waits for the worker running the job to see it
CANCEL_TTL_SECONDS = 600


def cancel(job_id: uuid.UUID) -> None:
    """Ask the worker running `job_id` to drop it."""
    get_redis().set(key("cancel", job_id), "1", ex=CANCEL_TTL_SECONDS)


def is_cancelled(job_id: uuid.UUID) -> bool:
    return bool(get_redis().exists(key("cancel", job_id)))
