"""Ids as callers give them (UUIDs or strings), parsed once: one that cannot be a UUID is
an unknown id, so it raises the same NotFound as one that names nothing."""

from __future__ import annotations

import uuid

from agentq.errors import AgentNotFound, ConversationNotFound, JobNotFound


def conversation(value: uuid.UUID | str) -> uuid.UUID:
    """`value` as a conversation id, or ConversationNotFound."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ConversationNotFound(value) from None


def job(value: uuid.UUID | str) -> uuid.UUID:
    """`value` as a job id, or JobNotFound."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise JobNotFound(value) from None


def agent(value: uuid.UUID | str) -> uuid.UUID:
    """`value` as an agent id, or AgentNotFound."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise AgentNotFound(value) from None


def maybe(value: uuid.UUID | str | None) -> uuid.UUID | None:
    """`value` as a UUID, or None if it cannot be one (the caller says what is unknown)."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
