"""Cleaning of everything a provider sends back, before anyone stores or shows it.

A provider is another party's server: its model name, token counts, finish reasons and
error bodies may be any length, hold NUL bytes (no PostgreSQL text column takes them) or
numbers no 32-bit column holds. Every provider passes what it parsed through here, so a
`ChatResult` and a `ProviderError` message are always storable as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

from agentq.providers.base import FinishReason

#: how much of a provider's error body an error message may quote
BODY_SNIPPET_CHARS = 200
#: the longest model name kept (the jobs table's column is 200 characters)
MODEL_MAX_CHARS = 200
#: the largest token count kept: a signed 32-bit integer column
TOKENS_MAX = 2**31 - 1
#: what `ChatResult.finish_reason` can be
FINISH_REASONS = ("stop", "length", "refusal", "content_filter", "other")

#: C0 controls and DEL: never wanted in a name or an error message
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _valid_utf8(text: str) -> str:
    # Lone surrogates (JSON can carry "\ud800") cannot be encoded, so no database stores them.
    return text.encode("utf-8", "replace").decode("utf-8")


def clean_content(text: Any) -> str:
    """A reply's text as it can be stored: NUL bytes and lone surrogates removed. Line
    breaks and tabs stay; the length is the caller's to limit (AGENTQ_MAX_REPLY_LENGTH)."""
    if not isinstance(text, str):
        return ""
    return _valid_utf8(text.replace("\x00", ""))


def clean_line(text: str, limit: int) -> str:
    """One line of at most `limit` characters: control characters removed, whitespace
    runs collapsed, lone surrogates replaced; an ellipsis marks a cut."""
    text = " ".join(_CONTROL.sub(" ", _valid_utf8(text)).split())
    if len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    return text


def clean_model(value: Any, fallback: str) -> str:
    """The model name a provider reported, storable: control characters removed, cut to
    MODEL_MAX_CHARS; `fallback` (the requested model, cleaned the same way) when empty."""
    for candidate in (value, fallback):
        if isinstance(candidate, str):
            text = _CONTROL.sub("", _valid_utf8(candidate)).strip()[:MODEL_MAX_CHARS]
            if text:
                return text
    return ""


def clamp_tokens(value: Any) -> int:
    """A token count as it can be stored: a number clamped to 0..TOKENS_MAX (a float is
    truncated); anything else (a string, a bool, null, NaN) counts 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0 if math.isnan(value) or value < 0 else TOKENS_MAX
        value = int(value)
    return min(max(value, 0), TOKENS_MAX)


def snippet(text: str, secret: str = "") -> str:
    """A provider's text fit to quote in an error: the API key masked (some providers echo
    the key they rejected), one line, at most BODY_SNIPPET_CHARS characters."""
    if secret:
        text = text.replace(secret, "***")
    return clean_line(text, BODY_SNIPPET_CHARS)


_OPENAI_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
}
_ANTHROPIC_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refusal",
}


def openai_finish(value: Any) -> FinishReason:
    """OpenAI's `finish_reason`, normalized (absent: "stop"; tool calls and the
    unknown: "other")."""
    if value is None:
        return "stop"
    return _OPENAI_FINISH.get(value, "other") if isinstance(value, str) else "other"


def anthropic_finish(value: Any) -> FinishReason:
    """Anthropic's `stop_reason`, normalized (absent: "stop"; tool use, pause and the
    unknown: "other")."""
    if value is None:
        return "stop"
    return _ANTHROPIC_STOP.get(value, "other") if isinstance(value, str) else "other"
