"""The Anthropic Messages API provider (`POST {endpoint}/messages`).

Set `LLM_ENDPOINT=https://api.anthropic.com/v1` (the provider appends `/messages`); the
key goes in the `x-api-key` header, with `anthropic-version: 2023-06-01`.

The Messages API wants the turns in a shape agentq's history does not always have, so
the request is rewritten (`turns`):

- system messages become the top-level `system` prompt;
- a speaker's display name is written before the text (the API has no `name` field);
- consecutive turns of one role are merged (joined with a blank line);
- assistant turns before the first user turn are folded into that user turn (or, with
  no user turn at all, make one), marked "(You said earlier: ...)", since the first turn
  must be the user's;
- assistant turns after the last user turn are left out: newer Claude models reject a
  request ending on an assistant turn (no prefill), and agentq's reply is the next
  assistant turn anyway.

`stop_reason` is normalized: end_turn/stop_sequence -> "stop", max_tokens -> "length",
refusal -> "refusal", anything else -> "other". With `on_token` the reply streams
(server-sent events: `content_block_delta` text deltas, `message_delta` with the stop
reason and usage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentq.providers.base import ChatMessage, ChatRequest, ChatResult
from agentq.providers.clean import anthropic_finish, clamp_tokens, clean_content, clean_model
from agentq.providers.http import HTTPProvider, StreamParser

ANTHROPIC_VERSION = "2023-06-01"
#: how assistant turns that came before any user turn are marked inside that user turn
EARLIER_NOTE = "(You said earlier: {text})"


def turns(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The top-level system prompt and the alternating user/assistant turns, starting and
    ending with a user turn (see the module docstring). No turns when nobody spoke."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    said = [m for m in messages if m.role != "system"]
    last_user = max((i for i, m in enumerate(said) if m.role == "user"), default=-1)
    out: list[dict[str, str]] = []
    earlier: list[str] = []
    # No user turn at all: the assistant's own words become the (only) user turn.
    for m in said[: last_user + 1] if last_user >= 0 else said:
        text = f"{m.name}: {m.content}" if m.name else m.content
        if m.role == "assistant" and not out:
            earlier.append(EARLIER_NOTE.format(text=text))
            continue
        if m.role == "user" and earlier:
            text = "\n\n".join([*earlier, text])
            earlier = []
        if out and out[-1]["role"] == m.role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": m.role, "content": text})
    if earlier:
        out.append({"role": "user", "content": "\n\n".join(earlier)})
    return system, out


class AnthropicProvider(HTTPProvider):
    """Claude through the Messages API. `request.extra` is merged into the JSON body."""

    name = "anthropic"

    def build(
        self, request: ChatRequest, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        url = request.endpoint.rstrip("/") + "/messages"
        system, history = turns(request.messages)
        if not history:
            raise self.invalid_request("no user turn to answer")
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": history,
        }
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        payload.update(request.extra)
        if stream:
            payload["stream"] = True
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if request.api_key:
            headers["x-api-key"] = request.api_key
        return url, headers, payload

    def parse(self, data: dict[str, Any], request: ChatRequest) -> ChatResult:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise self.invalid("no content list")
        texts = [
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        usage = data.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return ChatResult(
            content=clean_content("".join(texts)),
            model=clean_model(data.get("model"), request.model),
            prompt_tokens=clamp_tokens(usage.get("input_tokens")),
            completion_tokens=clamp_tokens(usage.get("output_tokens")),
            finish_reason=anthropic_finish(data.get("stop_reason")),
        )

    def stream_parser(self, request: ChatRequest, on_token: Callable[[str], None]) -> StreamParser:
        return _AnthropicStream(self, request, on_token)


class _AnthropicStream(StreamParser):
    """Messages API events, told apart by their `type`: message_start (model, input
    tokens), content_block_delta (text_delta), message_delta (stop_reason, output tokens),
    message_stop (the end), error; ping and the block starts and stops carry nothing."""

    def __init__(
        self, provider: AnthropicProvider, request: ChatRequest, on_token: Callable[[str], None]
    ) -> None:
        super().__init__(provider, request)
        self.on_token = on_token
        self.parts: list[str] = []
        self.model: Any = None
        self.stop_reason: Any = None
        self.prompt = self.completion = 0

    def feed(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        if kind == "error":
            raise self.provider.stream_error(chunk.get("error"), self.request)
        if kind == "message_start":
            message = chunk.get("message")
            if isinstance(message, dict):
                self.model = message.get("model") or self.model
                self._usage(message.get("usage"))
        elif kind == "content_block_delta":
            delta = chunk.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if not isinstance(text, str):
                    raise self.provider.invalid("text_delta without text")
                if text:
                    self.parts.append(text)
                    self.on_token(text)
        elif kind == "message_delta":
            delta = chunk.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self.stop_reason = delta["stop_reason"]
            self._usage(chunk.get("usage"))
        elif kind == "message_stop":
            self.done = True

    def _usage(self, usage: Any) -> None:
        # message_start has the input tokens; message_delta the (cumulative) output tokens
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:
            self.prompt = clamp_tokens(usage.get("input_tokens"))
        if "output_tokens" in usage:
            self.completion = clamp_tokens(usage.get("output_tokens"))

    def result(self) -> ChatResult:
        if not self.done and self.stop_reason is None:
            raise self.provider.stream_cut()
        return ChatResult(
            content=clean_content("".join(self.parts)),
            model=clean_model(self.model, self.request.model),
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            finish_reason=anthropic_finish(self.stop_reason),
        )
