"""agentq: a conversation-aware job queue for LLM agents, on Celery."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentq.errors import (
    AgentNotFound,
    AgentqError,
    Conflict,
    ContentTooLong,
    ConversationNotFound,
    EmptyContent,
    InvalidInput,
    JobNotFound,
    NotAParticipant,
    NotFound,
    ProviderError,
    Timeout,
)

if TYPE_CHECKING:
    from agentq.client import Client
    from agentq.config import Settings, get_settings
    from agentq.events import on

#: imported on first use, so that `import agentq.cli` (every `agentq` command, `--help`
#: included) does not load the client, SQLAlchemy and Celery before it needs them
_LAZY = {
    "Client": "agentq.client",
    "Settings": "agentq.config",
    "get_settings": "agentq.config",
    "on": "agentq.events",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'agentq' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "AgentNotFound",
    "AgentqError",
    "Client",
    "Conflict",
    "ContentTooLong",
    "ConversationNotFound",
    "EmptyContent",
    "InvalidInput",
    "JobNotFound",
    "NotAParticipant",
    "NotFound",
    "ProviderError",
    "Settings",
    "Timeout",
    "get_settings",
    "on",
]

__version__ = "0.1.0"
