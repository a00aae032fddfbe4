"""Responder selection: which agents answer a batch of pending messages.

A DM: its one agent. A channel: the agents @mentioned by name (in any case and script, as
`agentq.names` compares names), else the one a scorer finds most relevant (default: word
overlap of the recent text with role, backstory and goal). An agent never answers its own
message. Pluggable: set AGENTQ_RESPONDER_SELECTOR to "package.module:function" with the
signature of `select_responders`.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agentq import names
from agentq.states import AgentStatus, ConversationKind, Responders, Role

WORD_RE = re.compile(r"[a-z0-9]{3,}")


class ConversationView(Protocol):
    """What a selector sees of the conversation: a row of its columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def settings(self) -> dict[str, Any] | None: ...


class MessageView(Protocol):
    """What a selector sees of a pending message: a row of its columns."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def seq(self) -> int: ...
    @property
    def author_id(self) -> uuid.UUID | None: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...


class Member(Protocol):
    """An agent of the conversation, as a selector sees it."""

    @property
    def participant_id(self) -> uuid.UUID: ...
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
    def status(self) -> str: ...


#: (conversation, its agents in joining order, pending messages oldest first) -> the agents
#: that answer
Selector = Callable[[ConversationView, Sequence[Member], Sequence[MessageView]], list[Member]]


def relevance(text: str, agent: Member) -> int:
    """How many distinct words of `text` appear in the agent's role, backstory and goal."""
    profile = set(
        WORD_RE.findall(f"{agent.name} {agent.role} {agent.backstory} {agent.goal}".lower())
    )
    return len(set(WORD_RE.findall(text.lower())) & profile)


def select_responders(
    conv: ConversationView, members: Sequence[Member], messages: Sequence[MessageView]
) -> list[Member]:
    """The default selector. `messages` is the pending batch, oldest first."""
    agents = [a for a in members if a.status != AgentStatus.INACTIVE]
    if not agents:
        return []
    by_participant = {a.participant_id: a for a in agents}
    human = [m for m in messages if m.role == Role.USER and m.author_id not in by_participant]
    if human:
        speaking, candidates = human, agents
    elif could_answer_agent(conv) and messages:
        # Autonomous turn: another agent answers the last agent's message.
        last = messages[-1]
        speaking = [last]
        candidates = [a for a in agents if a.participant_id != last.author_id]
    else:
        return []
    if not candidates:
        return []
    if conv.kind == ConversationKind.DM:
        return candidates[:1]
    by_key = {names.key(a.name): a for a in candidates}
    mentioned = [by_key[k] for m in speaking for k in names.mentioned(m.content, by_key)]
    if mentioned:
        return list(dict.fromkeys(mentioned))
    if human and (conv.settings or {}).get("responders") == Responders.ALL:
        return candidates
    text = " ".join(m.content for m in speaking)
    return [max(candidates, key=lambda a: relevance(text, a))]


def could_answer_agent(conv: ConversationView) -> bool:
    """Whether an agent's message may be answered by another agent: in channels whose
    settings say `autonomous`, within the hop limit and turn budget."""
    return autonomous(conv.kind, conv.settings)


def autonomous(kind: str, settings: dict[str, Any] | None) -> bool:
    """`could_answer_agent` for a conversation's kind and settings."""
    return kind == ConversationKind.CHANNEL and bool((settings or {}).get("autonomous"))


def get_selector(path: str | None) -> Selector:
    if not path:
        return select_responders
    module, _, name = path.partition(":")
    fn: Selector = getattr(importlib.import_module(module), name)
    return fn
