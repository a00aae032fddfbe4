"""Where the answer to a message stands: the reply written to it, or the failure of the
job answering it (what `Client.wait_for_reply` polls)."""

from __future__ import annotations

import uuid

from agentq.errors import NotFound, ProviderError
from agentq.schemas import MessageOut
from agentq.states import JobStatus
from agentq.store import reads


def conversation_of(message_id: uuid.UUID) -> uuid.UUID:
    """The conversation of the message; NotFound if there is no such message."""
    conversation_id = reads.message_conversation(message_id)
    if conversation_id is None:
        raise NotFound("message", message_id)
    return conversation_id


def reply_to(message_id: uuid.UUID) -> MessageOut | None:
    """The reply of the first job the message triggered that completed with one; None
    while there is none yet. Raises ProviderError (not retryable) if a job triggered by
    the message failed before any reply was found."""
    for job in reads.triggered_jobs(message_id):
        if job.status == JobStatus.COMPLETED and job.reply is not None:
            return job.reply
        if job.status == JobStatus.FAILED:
            raise ProviderError(f"job {job.id} failed: {job.failure_reason}", retryable=False)
    return None
