"""The fake LLM's answers, as OpenAI and Anthropic write them today: JSON bodies, server-sent
event streams and error bodies. `agentq.testing.fake_llm_app` decides which one a request
gets; this module only writes them."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal

from starlette.responses import JSONResponse, Response

#: the reply quotes at most this much of the user's message
REPLY_QUOTE_CHARS = 200
#: what the "refusal" script word answers
REFUSAL_TEXT = "I'm sorry, but I can't help with that."
_TOKEN = re.compile(r"\S+\s*")

Flavour = Literal["openai", "anthropic"]


@dataclass
class Reply:
    """One successful answer, before it is written in a provider's shape."""

    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    #: OpenAI's word: "stop", "length" or "content_filter" (Anthropic's is derived)
    finish: str = "stop"
    #: set for a refusal: OpenAI sends it as `message.refusal`, Anthropic as stop_reason
    refusal: str | None = None
    #: a stream stops halfway, with neither a finish reason nor its end marker
    cut: bool = False


def tokens(text: str) -> list[str]:
    """A text's words with the whitespace after each, so that they join back into it."""
    return _TOKEN.findall(text)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def reply_text(messages: list[Any], limit: int | None) -> tuple[str, bool, int]:
    """(reply, truncated, prompt_tokens) for the request's messages: "reply to: <the last
    user message>", cut to `limit` words."""
    last_user = ""
    prompt_tokens = 0
    for m in messages:
        if isinstance(m, dict):
            text = _text(m.get("content"))
            prompt_tokens += len(text.split())
            if m.get("role") == "user":
                last_user = text
    words = tokens(f"reply to: {last_user[:REPLY_QUOTE_CHARS]}")
    truncated = limit is not None and len(words) > limit
    if truncated:
        words = words[: max(limit or 0, 1)]
    return "".join(words).rstrip(), truncated, prompt_tokens


# -- errors ---------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    408: "timeout_error",
    409: "conflict_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error(
    flavour: Flavour,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    kind: str | None = None,
    code: str | int | None = None,
    param: str | None = None,
) -> JSONResponse:
    """An error in the provider's shape; `kind` defaults to the status's usual type."""
    kind = kind or _ERROR_TYPES.get(status, "api_error")
    body: dict[str, Any]
    if flavour == "anthropic":
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {
            "error": {
                "message": message,
                "type": kind,
                "param": param,
                "code": status if code is None else code,
            }
        }
    return JSONResponse(body, status_code=status, headers=headers)


def quota_error(flavour: Flavour) -> JSONResponse:
    """OpenAI's 429 for an exhausted quota or billing limit, which no wait cures."""
    return error(
        flavour,
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        kind="insufficient_quota",
        code="insufficient_quota",
    )


def nul_error() -> Response:
    """A 500 whose (non-JSON) body holds a NUL byte, as a broken gateway might send."""
    return Response(
        b"upstream error\x00 from a broken gateway", status_code=500, media_type="text/plain"
    )


def retry_after_seconds(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"}


def retry_after_ms(seconds: float) -> dict[str, str]:
    return {"retry-after-ms": str(round(seconds * 1000))}


def retry_after_date(seconds: float) -> dict[str, str]:
    """An HTTP date at least `seconds` from now (dates have whole seconds: rounded up)."""
    return {"Retry-After": formatdate(math.ceil(time.time() + seconds), usegmt=True)}


# -- OpenAI ---------------------------------------------------------------------------------


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def openai_json(reply: Reply) -> JSONResponse:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.refusal is not None:
        message = {"role": "assistant", "content": None, "refusal": reply.refusal}
    return JSONResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
            "usage": _usage(reply),
        }
    )


def openai_sse(reply: Reply, include_usage: bool) -> list[str]:
    """The `data:` events of a streamed chat completion, ending with `[DONE]`."""
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        data = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n"

    def delta(d: dict[str, Any], finish: str | None = None) -> str:
        return chunk([{"index": 0, "delta": d, "finish_reason": finish}])

    key, text = ("refusal", reply.refusal) if reply.refusal is not None else ("content", "")
    text = text or reply.content
    out = [delta({"role": "assistant", key: ""})]
    out += [delta({key: t}) for t in tokens(text)]
    if reply.cut:
        return out[: max(len(out) // 2, 1)]
    out.append(delta({}, reply.finish))
    if include_usage:
        out.append(chunk([], usage=_usage(reply)))
    out.append("data: [DONE]\n\n")
    return out


# -- Anthropic ------------------------------------------------------------------------------

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


def _stop_reason(reply: Reply) -> str:
    return "refusal" if reply.refusal is not None else _STOP_REASONS.get(reply.finish, "end_turn")


def anthropic_json(reply: Reply) -> JSONResponse:
    content = [] if reply.refusal is not None else [{"type": "text", "text": reply.content}]
    return JSONResponse(
        {
            "id": f"msg_{uuid.uuid4().hex}",
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": content,
            "stop_reason": _stop_reason(reply),
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.prompt_tokens,
                "output_tokens": reply.completion_tokens,
            },
        }
    )


def anthropic_sse(reply: Reply) -> list[str]:
    """The events of a streamed Messages API answer, `message_start` to `message_stop`."""

    def event(kind: str, **data: Any) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

    start: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
    }
    out = [event("message_start", message=start)]
    if reply.refusal is None:
        out.append(
            event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        )
        out.append(event("ping"))
        out += [
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": t})
            for t in tokens(reply.content)
        ]
        if reply.cut:
            return out[: max(len(out) // 2, 1)]
        out.append(event("content_block_stop", index=0))
    out.append(
        event(
            "message_delta",
            delta={"stop_reason": _stop_reason(reply), "stop_sequence": None},
            usage={"output_tokens": reply.completion_tokens},
        )
    )
    out.append(event("message_stop"))
    return out
