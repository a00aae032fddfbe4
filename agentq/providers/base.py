"""What an LLM provider is: a chat request in, a chat result out.

A provider turns a `ChatRequest` into one HTTP call (or none, for `echo`), either
blocking (`complete`) or on an event loop (`acomplete`, which a cancelled task ends at
once, closing the HTTP request). Transient failures raise `ProviderError(retryable=True)`;
`call_with_retries` / `acall_with_retries` retry those with exponential backoff and full
jitter, honouring the provider's Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["system", "user", "assistant"]

#: what `ChatResult.finish_reason` can be (see agentq.providers.clean)
FinishReason = Literal["stop", "length", "refusal", "content_filter", "other"]


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
    #: seconds allowed for connecting and between two reads (httpx's timeouts are per
    #: read: bound a whole call with asyncio.timeout around `acomplete`)
    timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: the JSON key OpenAI-style servers get the token limit under: "max_completion_tokens"
    #: (OpenAI today; reasoning models reject "max_tokens") or "max_tokens" (older
    #: OpenAI-compatible servers). Anthropic always takes "max_tokens".
    token_param: str = "max_completion_tokens"


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
    #: why the reply ended: "stop" (complete), "length" (cut at the token limit),
    #: "refusal" (the content is the refusal), "content_filter", or "other" (tool calls,
    #: a pause, a reason this version does not know)
    finish_reason: FinishReason = "stop"


class Provider:
    """Base class of providers; subclasses set `name` and implement `complete`, and
    should implement `acomplete` (the default runs `complete` in a thread, which a
    cancelled task cannot stop)."""

    name: ClassVar[str]

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        """Send one request; raise `ProviderError` on failure. No retries here."""
        raise NotImplementedError

    async def acomplete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        """`complete` on the running event loop; `on_token` is called on the loop's thread.
        Cancelling the awaiting task must end the HTTP request at once."""
        if on_token is None:
            return await asyncio.to_thread(self.complete, request)
        loop = asyncio.get_running_loop()
        callback = on_token

        def relay(text: str) -> None:
            loop.call_soon_threadsafe(callback, text)

        return await asyncio.to_thread(self.complete, request, on_token=relay)

    def close(self) -> None:
        """Release pooled connections."""

    async def aclose(self) -> None:
        """Release the connections the running event loop's calls pooled (and `close`)."""
        self.close()
