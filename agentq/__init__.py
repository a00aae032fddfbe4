"""agentq: a conversation-aware job queue for LLM agents, on Celery."""

from agentq.client import Client
from agentq.config import Settings, get_settings
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
from agentq.events import on

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
