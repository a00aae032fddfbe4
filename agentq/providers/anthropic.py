"""The Anthropic Messages API provider (`POST {endpoint}/messages`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from agentq.providers.base import ChatMessage, ChatRequest, ChatResult
from agentq.providers.openai import HTTPProvider

ANTHROPIC_VERSION = "2023-06-01"


def _turns(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The top-level system prompt and the user/assistant turns.

    The Messages API has no `name` field, so a speaker's name is written before the text;
    consecutive turns of one role are merged because the API wants them to alternate.
    """
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        text = f"{m.name}: {m.content}" if m.name else m.content
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": m.role, "content": text})
    return system, turns


class AnthropicProvider(HTTPProvider):
    """Claude through the Messages API. `request.extra` is merged into the JSON body.

    No streaming over the wire: with `on_token`, the whole reply is passed once.
    """

    name = "anthropic"

    def complete(
        self, request: ChatRequest, *, on_token: Callable[[str], None] | None = None
    ) -> ChatResult:
        url = request.endpoint.rstrip("/") + "/messages"
        system, turns = _turns(request.messages)
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": turns,
        }
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        payload.update(request.extra)
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if request.api_key:
            headers["x-api-key"] = request.api_key
        start = time.monotonic()
        try:
            with self.pool.client(request.timeout) as client:
                response = client.post(url, json=payload, headers=headers, timeout=request.timeout)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, request) from exc
        if response.status_code != 200:
            raise self._status_error(response, request)
        result = self._parse(self._json(response), request)
        if on_token is not None and result.content:
            on_token(result.content)
        return ChatResult(
            content=result.content,
            model=result.model,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            latency=time.monotonic() - start,
        )

    def _parse(self, data: dict[str, Any], request: ChatRequest) -> ChatResult:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise self._invalid("no content list")
        texts = [
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        usage = data.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return ChatResult(
            content="".join(texts),
            model=str(data.get("model") or request.model),
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
        )
