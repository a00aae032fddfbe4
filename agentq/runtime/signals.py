"""Cancel signals: how a conversation (or an operator) tells the worker running one of its
jobs to stop its LLM call now.

A signal is a key (for a call that starts after it was sent) and a message on one channel
that every worker's call watcher follows (for the calls in flight).
"""

from __future__ import annotations

import uuid

from agentq.runtime.redis import get_redis, key

#: how long a cancel signal waits for the worker running the job to see it
CANCEL_TTL_SECONDS = 600


def channel() -> str:
    """The channel cancel signals are announced on."""
    return key("cancel")


def cancel(job_id: uuid.UUID) -> None:
    """Ask the worker running `job_id` to drop its call."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(key("cancel", job_id), "1", ex=CANCEL_TTL_SECONDS)
    pipe.publish(channel(), str(job_id))
    pipe.execute()


def is_cancelled(job_id: uuid.UUID) -> bool:
    return bool(get_redis().exists(key("cancel", job_id)))
