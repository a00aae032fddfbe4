"""Context: the conversation's recent history as LLM messages, from the responding
agent's point of view, under a system prompt built from its role, backstory and goal.

The mapped history is cached per agent and conversation (`agent_conversation_context`):
each call reads only the messages newer than the cache.
"""

from __future__ import annotations

import os
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentq.config import get_settings
from agentq.db.models import Agent, AgentConversationContext, Conversation, Message, Participant
from agentq.providers.base import ChatMessage, ChatRequest

_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


def system_prompt(agent: Agent) -> str:
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


def history(
    session: Session, agent: Agent, conv: Conversation, limit: int
) -> list[dict[str, Any]]:
    """The last `limit` messages, mapped for `agent`, updating the cache in `session`."""
    cache = session.scalar(
        select(AgentConversationContext).where(
            AgentConversationContext.agent_id == agent.id,
            AgentConversationContext.conversation_id == conv.id,
        )
    )
    after = cache.last_seq if cache else 0
    rows = session.execute(
        select(Message, Participant)
        .outerjoin(Participant, Message.author_id == Participant.id)
        .where(
            Message.conversation_id == conv.id,
            Message.seq > after,
            Message.deleted_at.is_(None),
            Message.role != "system",
        )
        .order_by(Message.seq.desc())
        .limit(limit)
    ).all()
    fresh = [
        {
            "seq": m.seq,
            "role": "assistant" if p is not None and p.agent_id == agent.id else "user",
            "name": _speaker(p.display_name) if p is not None else None,
            "content": m.content,
        }
        for m, p in reversed(rows)
    ]
    merged = ((cache.messages if cache else []) + fresh)[-limit:]
    if fresh:
        if cache is None:
            cache = AgentConversationContext(agent_id=agent.id, conversation_id=conv.id)
            session.add(cache)
        cache.messages = merged
        cache.last_seq = fresh[-1]["seq"]
    return merged


def build_messages(
    session: Session, agent: Agent, conv: Conversation, limit: int
) -> list[ChatMessage]:
    msgs = [ChatMessage(role="system", content=system_prompt(agent))]
    for h in history(session, agent, conv, limit):
        msgs.append(ChatMessage(role=h["role"], content=h["content"], name=h["name"]))
    return msgs


def chat_request(
    model_config: dict[str, Any], messages: list[ChatMessage], *, max_tokens: int | None = None,
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
