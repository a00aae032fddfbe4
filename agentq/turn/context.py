"""Context: the conversation's recent history as LLM messages, from the responding
agent's point of view, under a system prompt built from its role, backstory and goal.

The mapped history is cached per agent and conversation (`agent_conversation_context`):
each call reads only the messages newer than the cache.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from agentq.config import get_settings
from agentq.providers.base import ChatMessage, ChatRequest
from agentq.store import tables
from agentq.store.models import utcnow


class AgentProfile(Protocol):
    """What a prompt needs of an agent: an Agent, or a row with its columns."""

    id: uuid.UUID
    name: str
    role: str
    backstory: str
    goal: str
    system_prompt: str | None


_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


def system_prompt(agent: AgentProfile) -> str:
    if agent.system_prompt:
        return agent.system_prompt
    parts = [f"You are {agent.name}."]
    if agent.role:
        parts.append(f"Your role: {agent.role}.")
    if agent.backstory:
        parts.append(f"Backstory: {agent.backstory}")
    if agent.goal:
        parts.append(f"Your goal: {agent.goal}")
    parts.append("Answer as yourself; other speakers are named.")
    return " ".join(parts)


def _speaker(name: str) -> str:
    # OpenAI accepts names matching ^[A-Za-z0-9_-]{1,64}$ only.
    return _NAME_RE.sub("_", name)[:64] or "user"


_CTX, _M, _P = tables.contexts, tables.messages, tables.participants
# Built once: every LLM call reads the cache and the messages after it.
_CACHED = select(_CTX.c.id, _CTX.c.last_seq, _CTX.c.messages).where(
    _CTX.c.agent_id == bindparam("agent_id"), _CTX.c.conversation_id == bindparam("conv_id")
)
_FRESH = (
    select(_M.c.seq, _M.c.content, _P.c.agent_id, _P.c.display_name)
    .outerjoin(_P, _M.c.author_id == _P.c.id)
    .where(
        _M.c.conversation_id == bindparam("conv_id"),
        _M.c.seq > bindparam("after"),
        _M.c.deleted_at.is_(None),
        _M.c.role != "system",
    )
    .order_by(_M.c.seq.desc())
    .limit(bindparam("limit"))
)
_INSERT_CACHE = insert(_CTX)
_UPDATE_CACHE = update(_CTX).where(_CTX.c.id == bindparam("cache_id"))


def history(
    session: Session, agent_id: uuid.UUID, conversation_id: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    """The last `limit` messages, mapped for the agent, updating the cache in `session`."""
    conn = session.connection()
    ids = {"agent_id": agent_id, "conv_id": conversation_id}
    cache = conn.execute(_CACHED, ids).first()
    rows = conn.execute(
        _FRESH, {**ids, "after": cache.last_seq if cache else 0, "limit": limit}
    ).all()
    fresh = [
        {
            "seq": r.seq,
            "role": "assistant" if r.agent_id == agent_id else "user",
            "name": _speaker(r.display_name) if r.display_name is not None else None,
            "content": r.content,
        }
        for r in reversed(rows)
    ]
    merged = ((cache.messages if cache else []) + fresh)[-limit:]
    if fresh:
        values = {"last_seq": fresh[-1]["seq"], "messages": merged, "updated_at": utcnow()}
        if cache is None:
            conn.execute(
                _INSERT_CACHE,
                {
                    "id": uuid.uuid4(),
                    "agent_id": agent_id,
                    "conversation_id": conversation_id,
                    **values,
                },
            )
        else:
            conn.execute(_UPDATE_CACHE, {"cache_id": cache.id, **values})
    return merged


def build_messages(
    session: Session, agent: AgentProfile, conversation_id: uuid.UUID, limit: int
) -> list[ChatMessage]:
    """The request's messages: the agent's system prompt, then its view of the history.
    `agent` is an Agent or a row with its columns."""
    msgs = [ChatMessage(role="system", content=system_prompt(agent))]
    for h in history(session, agent.id, conversation_id, limit):
        msgs.append(ChatMessage(role=h["role"], content=h["content"], name=h["name"]))
    return msgs


def chat_request(
    model_config: dict[str, Any],
    messages: list[ChatMessage],
    *,
    max_tokens: int | None = None,
    timeout: float | None = None,
) -> ChatRequest:
    """The provider request for an agent's `model_config`, over the LLM_* defaults.

    The API key comes from the environment only: `api_key_env` names the variable,
    else LLM_API_KEY.
    """
    llm = get_settings().llm
    key_env = model_config.get("api_key_env")
    return ChatRequest(
        messages=messages,
        model=model_config.get("model") or llm.model,
        max_tokens=max_tokens or int(model_config.get("max_tokens") or llm.max_tokens),
        temperature=model_config.get("temperature"),
        endpoint=model_config.get("endpoint") or llm.endpoint,
        api_key=os.environ.get(key_env, "") if key_env else llm.api_key.get_secret_value(),
        timeout=timeout or float(model_config.get("timeout") or llm.timeout),
    )
