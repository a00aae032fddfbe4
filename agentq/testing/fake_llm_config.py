"""The fake LLM's knobs (`FakeLLMConfig`) and script, checked as they come in.

Script words (besides HTTP statuses such as 429 or 500), one per request, in order:

    ok           the normal answer ("reply to: <last user message>")
    hang         the normal answer after `hang_seconds` more
    hold:N       the normal answer after N more seconds (e.g. "hold:5"), to hold one call
    badjson      a 200 whose body (or first stream chunk) is not JSON
    nocontent    a 200 without choices / content
    length       the reply cut at 2 words, finish_reason "length" (stop_reason max_tokens)
    refusal      OpenAI: `message.refusal` (content null); Anthropic: stop_reason "refusal"
    empty        a complete reply with empty content
    cut          a stream that stops halfway, with no finish reason and no end marker
    s408         408 request timeout
    s409_retry   409 with `x-should-retry: true`
    s500_noretry 500 with `x-should-retry: false`
    quota        429 with error type/code `insufficient_quota` (no Retry-After)
    ra_seconds   429 with `Retry-After: <retry_after>` in seconds
    ra_ms        429 with `retry-after-ms: <retry_after * 1000>` only
    ra_date      429 with `Retry-After: <HTTP date at least retry_after seconds ahead>`
    longmodel    the normal answer, reporting a model name of 300 characters
    nulmodel     the normal answer, reporting a model name with a NUL byte in it
    nulerror     500 whose text/plain body holds a NUL byte
    hugetokens   the normal answer, reporting usage of 3,000,000,000 tokens each way
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: scripted outcomes besides plain HTTP statuses and "hold:<seconds>"
SCRIPT_WORDS = frozenset(
    {
        "ok",
        "badjson",
        "nocontent",
        "hang",
        "length",
        "refusal",
        "empty",
        "cut",
        "s408",
        "s409_retry",
        "s500_noretry",
        "quota",
        "ra_seconds",
        "ra_ms",
        "ra_date",
        "longmodel",
        "nulmodel",
        "nulerror",
        "hugetokens",
    }
)
_HOLD = re.compile(r"hold:(\d+(?:\.\d+)?)")


@dataclass
class FakeLLMConfig:
    """How the fake LLM behaves. Rates are fractions of requests in [0, 1]; their sum
    should not exceed 1 (they are checked in the order timeout, error, 429)."""

    latency: float = field(default=0.05, metadata={"help": "seconds before each answer"})
    jitter: float = field(default=0.0, metadata={"help": "extra seconds, uniform 0..jitter"})
    error_rate: float = field(default=0.0, metadata={"help": "fraction answered 500"})
    rate_429: float = field(default=0.0, metadata={"help": "fraction answered 429"})
    retry_after: float = field(
        default=1.0, metadata={"help": "Retry-After seconds of 429s (and ra_* words)"}
    )
    timeout_rate: float = field(
        default=0.0, metadata={"help": "fraction that hang for hang_seconds first"}
    )
    hang_seconds: float = field(default=30.0, metadata={"help": "how long a hang lasts"})
    max_tokens: int | None = field(
        default=None, metadata={"help": "cut replies to this many words (finish: length)"}
    )
    token_delay: float = field(default=0.0, metadata={"help": "seconds between stream chunks"})
    api_key: str | None = field(
        default=None, metadata={"help": "when set, requests must carry this key"}
    )
    model: str = field(default="fake-model", metadata={"help": "model id /v1/models lists"})
    seed: int | None = field(default=None, metadata={"help": "seed of the random knobs"})
    reject_max_tokens_for: str | None = field(
        default=None,
        metadata={
            "help": "regex of model names that answer 400 unsupported_parameter to "
            "max_tokens, like OpenAI's reasoning models (e.g. '^(gpt-5|o[0-9])')"
        },
    )
    reject_trailing_assistant: bool = field(
        default=False,
        metadata={
            "help": "Messages API: 400 when the first turn is not the user's, the last is "
            "the assistant's, or two turns in a row share a role (like Claude 4.6+)"
        },
    )


_RATES = ("error_rate", "rate_429", "timeout_rate")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _converter(hint: Any) -> Callable[[Any], Any]:
    """The plain type of a config field (`int | None` -> int; bool reads "false")."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return _bool if hint is bool else hint  # type: ignore[no-any-return]


_FIELD_TYPES: dict[str, Callable[[Any], Any]] = {
    name: _converter(hint) for name, hint in typing.get_type_hints(FakeLLMConfig).items()
}


def _coerce_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """Knob values converted to their field types; ValueError names a bad one."""
    out: dict[str, Any] = {}
    for name, value in knobs.items():
        if name not in _FIELD_TYPES:
            raise ValueError(f"unknown knob {name!r}; known: {', '.join(sorted(_FIELD_TYPES))}")
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = _FIELD_TYPES[name](value)
            if name == "reject_max_tokens_for":
                re.compile(out[name])
        except (TypeError, ValueError, re.error):
            raise ValueError(f"{name}: {value!r} is not a valid value") from None
        if isinstance(out[name], float | int) and out[name] < 0:
            raise ValueError(f"{name}: must be >= 0")
        if name in _RATES and out[name] > 1:
            raise ValueError(f"{name}: must be a fraction between 0 and 1")
    return out


def _check_script(script: Any) -> list[int | str]:
    if not isinstance(script, list):
        raise ValueError("script: must be a list of statuses")
    out: list[int | str] = []
    for item in script:
        if isinstance(item, str) and item.isdigit():
            item = int(item)
        valid_status = isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599
        word = isinstance(item, str) and (item in SCRIPT_WORDS or _HOLD.fullmatch(item))
        if not (valid_status or word):
            raise ValueError(
                f"script: {item!r} is neither an HTTP status, 'hold:<seconds>' nor one of "
                f"{sorted(SCRIPT_WORDS)}"
            )
        out.append(item)
    return out
