"""Cancel signals: how a conversation (or an operator) tells the worker running a claim of
one of its jobs to stop its LLM call now.

A signal names the claim (job and lease token), so a later claim of the same job (an
operator's retry) is not stopped by it. It is a key (for a call that starts after it was
sent) and a message on one channel that every worker's call watcher follows (for the
calls in flight).
"""

from __future__ import annotations

import uuid

from agentq.runtime.redis import get_redis, key

#: how long a cancel signal waits for the worker running the claim to see it
CANCEL_TTL_SECONDS = 600


def channel() -> str:
    """The channel cancel signals are announced on: `<job id>:<token>` each."""
    return key("cancel")


def cancel(job_id: uuid.UUID, token: int) -> None:
    """Ask the worker running claim `token` of `job_id` to drop its call."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(key("cancel", job_id, token), "1", ex=CANCEL_TTL_SECONDS)
    pipe.publish(channel(), f"{job_id}:{token}")
    pipe.execute()


def is_cancelled(job_id: uuid.UUID, token: int) -> bool:
    return bool(get_redis().exists(key("cancel", job_id, token)))


def parse(message: bytes | str) -> tuple[uuid.UUID, int] | None:
    """The claim a message on `channel()` names, or None if it names none."""
    text = message.decode() if isinstance(message, bytes) else message
    job, _, token = text.partition(":")
    try:
        return uuid.UUID(job), int(token)
    except ValueError:
        return None
