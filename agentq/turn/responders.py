"""Responder selection: which agents answer a batch of pending messages.

A DM: its one agent. A channel: the agents @mentioned by name, else the one a scorer
finds most relevant (default: word overlap of the recent text with role, backstory and
goal). An agent never answers its own message. Pluggable: set AGENTQ_RESPONDER_SELECTOR
to "package.module:function" with the signature of `select_responders`.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentq.store.models import Agent, Participant

MENTION_RE = re.compile(r"@([A-Za-z][A-Za-z0-9_.-]*)")
WORD_RE = re.compile(r"[a-z0-9]{3,}")


class ConversationView(Protocol):
    """What a selector sees of the conversation: a Conversation, or a row of its columns."""

    id: uuid.UUID
    kind: str
    settings: dict[str, Any] | None


class MessageView(Protocol):
    """What a selector sees of a pending message: a Message, or a row of its columns."""

    id: uuid.UUID
    seq: int
    author_id: uuid.UUID | None
    role: str
    content: str


#: (session, conversation, pending messages oldest first) -> the agents that answer
Selector = Callable[[Session, ConversationView, Sequence[MessageView]], list[Agent]]


def conversation_agents(
    session: Session, conv: ConversationView
) -> list[tuple[Participant, Agent]]:
    """The conversation's agents with their participant rows, in joining order (read once
    a transaction: dispatch and the selector both need them)."""
    cache_key = ("conversation_agents", conv.id)
    cached: list[tuple[Participant, Agent]] | None = session.info.get(cache_key)
    if cached is None:
        rows = session.execute(
            select(Participant, Agent)
            .join(Agent, Participant.agent_id == Agent.id)
            .where(Participant.conversation_id == conv.id, Participant.kind == "agent")
            .order_by(Participant.joined_at)
        )
        cached = session.info[cache_key] = [(p, a) for p, a in rows]
    return cached


def relevance(text: str, agent: Agent) -> int:
    """How many distinct words of `text` appear in the agent's role, backstory and goal."""
    profile = set(
        WORD_RE.findall(f"{agent.name} {agent.role} {agent.backstory} {agent.goal}".lower())
    )
    return len(set(WORD_RE.findall(text.lower())) & profile)


def select_responders(
    session: Session, conv: ConversationView, messages: Sequence[MessageView]
) -> list[Agent]:
    """The default selector. `messages` is the pending batch, oldest first."""
    agents = [(p, a) for p, a in conversation_agents(session, conv) if a.status != "inactive"]
    if not agents:
        return []
    by_participant = {p.id: a for p, a in agents}
    human = [m for m in messages if m.role == "user" and m.author_id not in by_participant]
    if human:
        speaking, candidates = human, [a for _, a in agents]
    elif could_answer_agent(conv) and messages:
        # Autonomous turn: another agent answers the last agent's message.
        last = messages[-1]
        speaking = [last]
        candidates = [a for p, a in agents if p.id != last.author_id]
    else:
        return []
    if not candidates:
        return []
    if conv.kind == "dm":
        return candidates[:1]
    names = {a.name.lower(): a for a in candidates}
    mentioned = [
        names[n.lower()]
        for m in speaking
        for n in MENTION_RE.findall(m.content)
        if n.lower() in names
    ]
    if mentioned:
        return list(dict.fromkeys(mentioned))
    if human and (conv.settings or {}).get("responders") == "all":
        return candidates
    text = " ".join(m.content for m in speaking)
    return [max(candidates, key=lambda a: relevance(text, a))]


def could_answer_agent(conv: ConversationView) -> bool:
    """Whether an agent's message may be answered by another agent: in channels whose
    settings say `autonomous`, within the hop limit and turn budget."""
    return autonomous(conv.kind, conv.settings)


def autonomous(kind: str, settings: dict[str, Any] | None) -> bool:
    """`could_answer_agent` for a conversation's kind and settings."""
    return kind == "channel" and bool((settings or {}).get("autonomous"))


def get_selector(path: str | None) -> Selector:
    if not path:
        return select_responders
    module, _, name = path.partition(":")
    fn: Selector = getattr(importlib.import_module(module), name)
    return fn
