"""Answers kept in Redis when the database would not take them: a provider's answer whose
reply could not be written (the database down or restarting) is written later from here,
by the retried task, without calling the provider again."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid

from agentq.providers import ChatResult
from agentq.runtime.redis import get_redis, key

log = logging.getLogger(__name__)

#: how long a kept answer waits for its retry
KEEP_SECONDS = 3600


def keep(job_id: uuid.UUID, result: ChatResult) -> None:
    """Keep the job's answer (best effort), for whichever claim of it runs next."""
    try:
        data = json.dumps(dataclasses.asdict(result))
        get_redis().set(key("answer", job_id), data, ex=KEEP_SECONDS)
    except Exception as exc:  # noqa: BLE001 - then the retry calls the provider again
        log.warning("job %s: answer not kept: %s", job_id, type(exc).__name__)


def recall(job_id: uuid.UUID) -> ChatResult | None:
    """The answer kept for the job, if any."""
    try:
        data = get_redis().get(key("answer", job_id))
    except Exception as exc:  # noqa: BLE001 - nothing kept can be read: call the provider
        log.warning("job %s: kept answer not read: %s", job_id, type(exc).__name__)
        return None
    if not data:
        return None
    fields = {f.name for f in dataclasses.fields(ChatResult)}
    return ChatResult(**{k: v for k, v in json.loads(data).items() if k in fields})
