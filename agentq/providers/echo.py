"""A provider with no network: it answers "echo: <last user message>".

For tests, demos and load runs where the queue, not the model, is what is measured.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agentq.providers.base import ChatRequest, ChatResult, Provider

#: a word and the whitespace after it, so that the tokens join back into the reply
_TOKEN = re.compile(r"\S+\s*|\s+")


class EchoProvider(Provider):
    """Deterministic: the reply is `"echo: " + the last user message`, cut to
    `request.max_tokens` words; `on_token` gets it word by word."""

    name = "echo"

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        tokens = _TOKEN.findall(f"echo: {last_user}")[: max(request.max_tokens, 1)]
        content = "".join(tokens).rstrip()
        if on_token is not None:
            for token in _TOKEN.findall(content):
                on_token(token)
        prompt = sum(len(m.content.split()) for m in request.messages)
        return ChatResult(
            content=content,
            model=request.model or "echo",
            prompt_tokens=prompt,
            completion_tokens=len(content.split()),
        )

    async def acomplete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        """As `complete`, on the loop's thread (there is nothing to wait for)."""
        return self.complete(request, on_token=on_token)
