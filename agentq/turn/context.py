"""Context: the conversation's recent history as LLM messages, from the responding
agent's point of view, under a system prompt built from its role, backstory and goal.

The mapped history is cached per agent and conversation (`agent_conversation_context`):
each call reads only the messages newer than the cache.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from agentq import profiles
from agentq.clock import utcnow
from agentq.providers.base import ChatMessage, ChatRequest
from agentq.states import Role
from agentq.store import contexts
from agentq.store import messages as stored_messages
from agentq.store.session import Tx

#: seq is a 32-bit integer column
MAX_SEQ = 2**31 - 1


class AgentProfile(Protocol):
    """What a prompt needs of an agent: a row with these columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def backstory(self) -> str: ...
    @property
    def goal(self) -> str: ...
    @property
    def system_prompt(self) -> str | None: ...


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


def history_after(cache: contexts.Cached | None, upto: int) -> int:
    """The seq after which `history` reads messages, given the cache (see `history`)."""
    return cache.last_seq if cache is not None and cache.last_seq <= upto else 0


def history(
    tx: Tx,
    agent_id: uuid.UUID,
    conv_id: uuid.UUID,
    limit: int,
    upto: int = MAX_SEQ,
    *,
    cache: contexts.Cached | None,
    rows: Sequence[Any] | None = None,
    deferred: list[contexts.Pending] | None = None,
) -> list[dict[str, Any]]:
    """The last `limit` messages up to seq `upto` (a job's last trigger), mapped for the
    agent, with the replies written since. `cache` is the agent's cached history of the
    conversation as the caller read it (`agentq.store.contexts.cached`, or with the job);
    the cache keeps only what is settled (up to `upto`), so a later job still reads what
    this one left out. `rows`: the messages newer than the cache as the caller read them
    (`agentq.store.messages.history` after `history_after`), else they are read here.
    With `deferred`, the cache's new content goes there (the reply writes it: see
    `agentq.store.writes`) instead of being written now."""
    if cache is not None and cache.last_seq > upto:
        cache = None  # an older job again (an operator's retry): read, but keep no cache
        keep = False
    else:
        keep = True
    if rows is None:
        rows = stored_messages.history(tx, conv_id, history_after(cache, upto), upto, limit)
    fresh = [
        {
            "seq": r.seq,
            "role": Role.ASSISTANT if r.agent_id == agent_id else Role.USER,
            "name": _speaker(r.display_name) if r.display_name is not None else None,
            "content": r.content,
        }
        for r in reversed(rows)
    ]
    settled = [h for h in fresh if h["seq"] <= upto]
    later = [h for h in fresh if h["seq"] > upto]
    # A read cut at `limit` rows may have left out messages between the cache and what it
    # read: then what it read is the whole window, and it is cached only if it fills it
    # (a cache never has a gap, nor fewer messages than there are).
    cut = len(rows) >= limit
    older = cache.messages if cache is not None and not cut else []
    merged: list[dict[str, Any]] = (older + settled)[-limit:]
    if settled and keep and (not cut or len(settled) >= limit):
        last = settled[-1]["seq"]
        pending = contexts.Pending(cache.id if cache else None, agent_id, conv_id, last, merged)
        if deferred is not None:
            deferred.append(pending)
        else:
            contexts.write(tx, pending, utcnow())
    return (merged + later)[-limit:]


def build_messages(
    tx: Tx,
    agent: AgentProfile,
    conversation_id: uuid.UUID,
    limit: int,
    upto: int = MAX_SEQ,
    *,
    cache: contexts.Cached | None,
    rows: Sequence[Any] | None = None,
    deferred: list[contexts.Pending] | None = None,
) -> list[ChatMessage]:
    """The request's messages: the agent's system prompt, then its view of the history up
    to seq `upto` (see `history`)."""
    msgs = [ChatMessage(role="system", content=system_prompt(agent))]
    seen = history(
        tx, agent.id, conversation_id, limit, upto, cache=cache, rows=rows, deferred=deferred
    )
    for h in seen:
        msgs.append(ChatMessage(role=h["role"], content=h["content"], name=h["name"]))
    return msgs


def chat_request(
    model_config: dict[str, Any],
    messages: list[ChatMessage],
    *,
    max_tokens: int | None = None,
    timeout: float | None = None,
) -> ChatRequest:
    """The provider request for an agent's `model_config`, through its model profile.

    Endpoint, model, token parameter and key come from the operator's profile only (the
    key from the variable the profile names); max_tokens, temperature and timeout from
    `model_config` (or the arguments), within the profile's caps. Keys an agent stored
    before profiles existed (endpoint, model, api_key_env...) are ignored. Raises
    UnknownProfile if the profile is not declared (any more).
    """
    profile = profiles.of_agent(model_config)
    asked = profiles.bounded(model_config, profile)
    tokens = min(max_tokens or asked["max_tokens"] or profile.max_tokens, profile.max_tokens)
    return ChatRequest(
        messages=messages,
        model=profile.model,
        max_tokens=tokens,
        temperature=asked["temperature"],
        endpoint=profile.endpoint,
        api_key=profile.api_key(),
        timeout=min(timeout or asked["timeout"] or profile.timeout, profile.timeout),
        token_param=profile.max_tokens_param,
    )
