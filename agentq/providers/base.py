"""What an LLM provider is: a chat request in, a chat result out.

A provider turns a `ChatRequest` into one HTTP call (or none, for `echo`). Transient
failures raise `ProviderError(retryable=True)`; `call_with_retries` retries those with
exponential backoff and full jitter, honouring the provider's Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    #: the speaker's display name, kept so that an agent can tell other speakers apart
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: list[ChatMessage]
    model: str
    max_tokens: int = 1024
    temperature: float | None = None
    #: where and how to call; secrets live here and never in task arguments or logs
    endpoint: str = ""
    api_key: str = ""
    timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatResult:
    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: seconds spent in the provider call(s), retries and their waits included
    latency: float = 0.0
    #: how many HTTP requests it took (1 + retries)
    requests: int = 1


class Provider:
    """Base class of providers; subclasses set `name` and implement `complete`."""

    name: ClassVar[str]

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        """Send one request; raise `ProviderError` on failure. No retries here."""
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections."""
