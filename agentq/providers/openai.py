"""The OpenAI chat-completions provider (`POST {endpoint}/chat/completions`).

Works with OpenAI itself and with every server that speaks its API (vLLM, llama.cpp,
Ollama, LiteLLM, agentq's own fake LLM). The token limit goes under
`request.token_param`: "max_completion_tokens" by default (OpenAI's reasoning models,
gpt-5 and the o-series, answer 400 `unsupported_parameter` to "max_tokens"), or
"max_tokens" for older compatible servers that know only that.

`finish_reason` is normalized ("length" for a reply cut at the limit, "content_filter");
a `refusal` becomes the content with finish_reason "refusal".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agentq.providers.base import ChatMessage, ChatRequest, ChatResult, FinishReason
from agentq.providers.clean import (
    BODY_SNIPPET_CHARS,
    clamp_tokens,
    clean_content,
    clean_model,
    openai_finish,
)
from agentq.providers.http import (
    RETRYABLE_STATUSES,
    ClientPool,
    HTTPProvider,
    StreamParser,
    parse_retry_after,
)

__all__ = [
    "BODY_SNIPPET_CHARS",
    "RETRYABLE_STATUSES",
    "ClientPool",
    "HTTPProvider",
    "OpenAIProvider",
    "parse_retry_after",
]

#: OpenAI rejects a `name` outside this pattern with a 400, so display names are cleaned
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
#: the token-limit keys an OpenAI-style server may take
TOKEN_PARAMS = ("max_completion_tokens", "max_tokens")


def _openai_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        name = _NAME_BAD_CHARS.sub("_", message.name)[:64]
        if name.strip("_"):
            out["name"] = name
    return out


def _usage(data: dict[str, Any]) -> tuple[int, int]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    return clamp_tokens(usage.get("prompt_tokens")), clamp_tokens(usage.get("completion_tokens"))


class OpenAIProvider(HTTPProvider):
    """`POST {endpoint}/chat/completions`; streams server-sent events (with usage) when
    `on_token` is given. `request.extra` is merged into the JSON body (e.g. `top_p`)."""

    name = "openai"

    def build(
        self, request: ChatRequest, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        url = request.endpoint.rstrip("/") + "/chat/completions"
        token_param = request.token_param if request.token_param in TOKEN_PARAMS else None
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [_openai_message(m) for m in request.messages],
            token_param or TOKEN_PARAMS[0]: request.max_tokens,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        payload.update(request.extra)
        if stream:
            payload["stream"] = True
            # Without this OpenAI sends no usage when streaming; extra may override.
            payload.setdefault("stream_options", {"include_usage": True})
        headers = {"Content-Type": "application/json"}
        if request.api_key:
            headers["Authorization"] = f"Bearer {request.api_key}"
        return url, headers, payload

    def parse(self, data: dict[str, Any], request: ChatRequest) -> ChatResult:
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self.invalid("no choices[0].message") from None
        if not isinstance(choice, dict) or not isinstance(message, dict):
            raise self.invalid("choices[0].message is not an object")
        content = message.get("content")
        refusal = message.get("refusal")
        if content is not None and not isinstance(content, str):
            raise self.invalid("choices[0].message.content is not a string")
        if "content" not in message and not isinstance(refusal, str):
            raise self.invalid("no choices[0].message.content")
        finish: FinishReason = openai_finish(choice.get("finish_reason"))
        if isinstance(refusal, str) and refusal:
            content, finish = refusal, "refusal"
        prompt, completion = _usage(data)
        return ChatResult(
            content=clean_content(content or ""),
            model=clean_model(data.get("model"), request.model),
            prompt_tokens=prompt,
            completion_tokens=completion,
            finish_reason=finish,
        )

    def stream_parser(self, request: ChatRequest, on_token: Callable[[str], None]) -> StreamParser:
        return _OpenAIStream(self, request, on_token)


class _OpenAIStream(StreamParser):
    """Chat-completion chunks: `choices[0].delta.content` (or `.refusal`), the
    `finish_reason` of the last choice chunk, usage in the final choice-less chunk."""

    def __init__(
        self, provider: OpenAIProvider, request: ChatRequest, on_token: Callable[[str], None]
    ) -> None:
        super().__init__(provider, request)
        self.on_token = on_token
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.model: Any = None
        self.finish: Any = None
        self.finished = False
        self.usage = (0, 0)

    def feed(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            raise self.provider.stream_error(chunk["error"], self.request)
        self.model = chunk.get("model") or self.model
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk)
        choices = chunk.get("choices")
        if not choices:
            return  # e.g. the final usage-only chunk
        try:
            choice = choices[0]
            delta = choice.get("delta") or {}
            text = delta.get("content")
            refusal = delta.get("refusal")
        except (AttributeError, IndexError, KeyError, TypeError):
            raise self.provider.invalid("stream chunk without choices[0].delta") from None
        if choice.get("finish_reason") is not None:
            self.finish = choice["finish_reason"]
            self.finished = True
        if isinstance(refusal, str) and refusal:
            self.refusal.append(refusal)
        if text:
            if not isinstance(text, str):
                raise self.provider.invalid("stream delta content is not a string")
            self.parts.append(text)
            self.on_token(text)

    def result(self) -> ChatResult:
        if not (self.done or self.finished):
            # The connection ended mid-reply: what came is not the whole answer.
            raise self.provider.stream_cut()
        content = "".join(self.parts)
        finish: FinishReason = openai_finish(self.finish)
        if self.refusal:
            content, finish = "".join(self.refusal), "refusal"
        return ChatResult(
            content=clean_content(content),
            model=clean_model(self.model, self.request.model),
            prompt_tokens=self.usage[0],
            completion_tokens=self.usage[1],
            finish_reason=finish,
        )
