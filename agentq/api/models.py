"""Request and response bodies of the HTTP API (responses reuse `agentq.schemas`)."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agentq import names
from agentq.schemas import AgentOut, ConversationOut, JobOut, MessageOut, ParticipantOut

#: how deep and how big a JSON object given as settings or model_config may be
MAX_JSON_KEYS = 50


def _clean(value: str) -> str:
    # PostgreSQL rejects NUL in text and lone surrogates cannot be encoded: say so as 422
    # instead of failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _clean_json(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        raise ValueError("is nested too deeply")
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        if len(value) > MAX_JSON_KEYS:
            raise ValueError(f"has more than {MAX_JSON_KEYS} keys")
        return {_clean(k): _clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) > MAX_JSON_KEYS:
            raise ValueError(f"has more than {MAX_JSON_KEYS} items")
        return [_clean_json(v, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValueError("holds an integer too large for JSON clients")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("holds NaN or an infinity; numbers must be finite")
    return value


Text = Annotated[str, AfterValidator(_clean)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_clean_json)]


class _In(BaseModel):
    # allow_inf_nan: a float field declared here takes finite numbers only (422, not NaN
    # stored); the body check (api/body.py) already rejects NaN and Infinity in JSON.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class AgentModelConfig(_In):
    """An agent's model: an operator's model profile by name, and generation parameters
    within that profile's caps (checked against the profile: 422 naming the field and
    the cap). Endpoints, keys and models are the profile's, never a caller's."""

    profile: Annotated[Text, Field(min_length=1, max_length=64)] = "default"
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = None
    #: seconds for one provider request
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class AgentIn(_In):
    #: checked by agentq.names (422 naming `name` and saying what a name may be)
    name: Annotated[
        Text,
        Field(
            min_length=1,
            max_length=names.MAX_LENGTH,
            description=f"An @mention, unique in the tenant in any case: {names.RULE}.",
            examples=["Zoë", "助手", "Ólafur-2"],
        ),
    ]
    role: Annotated[Text, Field(max_length=10_000)] = ""
    backstory: Annotated[Text, Field(max_length=10_000)] = ""
    goal: Annotated[Text, Field(max_length=10_000)] = ""
    system_prompt: Annotated[Text, Field(max_length=50_000)] | None = None
    #: optional: if given, it must be the provider of the chosen profile
    provider: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    model_config_: AgentModelConfig = Field(default_factory=AgentModelConfig, alias="model_config")
    #: bounded by the profile's caps (422 naming the cap)
    max_concurrent_jobs: Annotated[int, Field(ge=1)] = 1
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 10


class AgentModelConfigPatch(_In):
    """Changes to an agent's model: given keys replace the stored ones (null removes one),
    the result is checked against the (new) profile's caps as at creation."""

    profile: Annotated[Text, Field(min_length=1, max_length=64)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = None
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class AgentPatch(_In):
    """`PATCH /v1/agents/{id}`: only the fields given change. The name and the provider
    do not change (the provider follows the profile)."""

    role: Annotated[Text, Field(max_length=10_000)] | None = None
    backstory: Annotated[Text, Field(max_length=10_000)] | None = None
    goal: Annotated[Text, Field(max_length=10_000)] | None = None
    #: null removes it
    system_prompt: Annotated[Text, Field(max_length=50_000)] | None = None
    model_config_: AgentModelConfigPatch | None = Field(default=None, alias="model_config")
    max_concurrent_jobs: Annotated[int, Field(ge=1)] | None = None
    rate_limit_per_minute: Annotated[int, Field(ge=1)] | None = None


class ConversationIn(_In):
    kind: Literal["dm", "channel"] = "dm"
    title: Annotated[Text, Field(max_length=200)] | None = None
    settings: JsonObject = Field(default_factory=dict)


class ParticipantIn(_In):
    """Exactly one of `agent_id` (an agent of yours) or `user_id` (your own user id)."""

    agent_id: uuid.UUID | None = None
    user_id: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    display_name: Annotated[Text, Field(min_length=1, max_length=200)] | None = None


class MessageIn(_In):
    author_id: uuid.UUID
    #: length is checked against AGENTQ_MAX_CONTENT_LENGTH (422 naming `content`)
    content: Text


class PostResult(BaseModel):
    """A posted message; with `?wait=`, the agent's reply too (or the job still running)."""

    message: MessageOut
    #: True when the Idempotency-Key matched an earlier post: nothing new was written
    duplicate: bool = False
    reply: MessageOut | None = None
    #: the job answering the message, once there is one
    job_id: uuid.UUID | None = None
    job_status: str | None = None


class MessagePage(BaseModel):
    items: list[MessageOut]
    #: pass as `after_seq` for the next page; None when this page is the last
    next_after_seq: int | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_offset: int | None


class EventRecord(BaseModel):
    id: int | None
    type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: str
    #: opaque: pass as `after` to continue after this event
    cursor: str | None = None


class EventPage(BaseModel):
    items: list[EventRecord]
    #: opaque cursor: pass as `after` for the next page (it moves past events you may
    #: not see, too); the same as `after` when there is nothing new yet
    next_after: str


__all__ = [
    "AgentIn",
    "AgentModelConfig",
    "AgentModelConfigPatch",
    "AgentPatch",
    "AgentOut",
    "ConversationIn",
    "ConversationOut",
    "EventPage",
    "EventRecord",
    "JobOut",
    "JobPage",
    "MessageIn",
    "MessagePage",
    "ParticipantIn",
    "ParticipantOut",
    "PostResult",
]
