"""What agentq returns to its callers (the Python client and the HTTP API): plain pydantic
models, detached from the database session."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AgentOut(_Out):
    id: uuid.UUID
    name: str
    role: str
    backstory: str
    goal: str
    system_prompt: str | None
    provider: str
    model_config_: dict[str, Any]
    status: str
    max_concurrent_jobs: int
    rate_limit_per_minute: int
    total_responses: int
    last_response_at: datetime | None
    created_at: datetime


class ConversationOut(_Out):
    id: uuid.UUID
    kind: str
    title: str | None
    settings: dict[str, Any]
    last_seq: int
    created_at: datetime


class ParticipantOut(_Out):
    id: uuid.UUID
    conversation_id: uuid.UUID
    kind: str
    user_id: str | None
    agent_id: uuid.UUID | None
    display_name: str


class MessageOut(_Out):
    id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    author_id: uuid.UUID | None
    role: str
    content: str
    reply_to_job_id: uuid.UUID | None
    created_at: datetime


class PostedMessage(MessageOut):
    #: True when an idempotency key matched an earlier post: nothing new was written
    duplicate: bool = False


class JobOut(_Out):
    id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    trigger_message_id: uuid.UUID
    status: str
    attempts: int
    max_attempts: int
    failure_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: the messages that caused the job, by seq
    trigger_seqs: list[int] = []
    reply: MessageOut | None = None
