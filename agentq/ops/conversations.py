"""Conversations and who takes part in them."""

from __future__ import annotations

import math
import uuid
from typing import Any

from agentq import ids
from agentq.clock import utcnow
from agentq.errors import Conflict, ConversationNotFound, InvalidInput
from agentq.ops import tenants
from agentq.schemas import ConversationOut, MessageOut, ParticipantOut
from agentq.states import ConversationKind, ParticipantKind
from agentq.store import agents, conversations, messages
from agentq.store.session import Tx, reader, transaction

#: seq is a 32-bit integer column
MAX_SEQ = 2**31 - 1

KINDS = ("dm", "channel")
#: per-conversation settings a caller may set, with the type each must have
SETTINGS: dict[str, type | tuple[type, ...]] = {
    "debounce_seconds": (int, float),
    "max_wait_seconds": (int, float),
    "double_texting": str,
    "hop_limit": int,
    "turn_budget": int,
    "autonomous": bool,
    "responders": str,
}
#: the longest debounce window a conversation may ask for, in seconds
MAX_WINDOW_SECONDS = 600.0
#: what happens to a message that arrives while the conversation's job runs
DOUBLE_TEXTING = ("enqueue", "reject", "interrupt", "rollback")
#: without an @mention in a channel: the most relevant agent answers, or all of them
RESPONDERS = ("one", "all")


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    for k, v in settings.items():
        if k not in SETTINGS:
            raise InvalidInput(f"settings.{k}", f"unknown setting; known: {', '.join(SETTINGS)}")
        if (isinstance(v, bool) and SETTINGS[k] is not bool) or not isinstance(v, SETTINGS[k]):
            raise InvalidInput(f"settings.{k}", f"has the wrong type ({type(v).__name__})")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidInput(f"settings.{k}", "must be a finite number")
    for name, allowed in (("double_texting", DOUBLE_TEXTING), ("responders", RESPONDERS)):
        if name in settings and settings[name] not in allowed:
            raise InvalidInput(f"settings.{name}", f"must be one of {', '.join(allowed)}")
    for name in ("hop_limit", "turn_budget"):
        if settings.get(name, 0) < 0:
            raise InvalidInput(f"settings.{name}", "must be >= 0")
    for name in ("debounce_seconds", "max_wait_seconds"):
        if settings.get(name, 0) > MAX_WINDOW_SECONDS:
            # A debounce timer is a Celery countdown: it must stay far inside the broker's
            # visibility timeout.
            raise InvalidInput(f"settings.{name}", f"must be <= {MAX_WINDOW_SECONDS:g}")
    debounce = settings.get("debounce_seconds")
    max_wait = settings.get("max_wait_seconds")
    if debounce is not None and debounce < 0:
        raise InvalidInput("settings.debounce_seconds", "must be >= 0")
    if max_wait is not None and max_wait < (debounce or 0):
        raise InvalidInput("settings.max_wait_seconds", "must be >= debounce_seconds")
    return dict(settings)


def create_conversation(
    kind: str = "dm",
    *,
    title: str | None = None,
    settings: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> ConversationOut:
    if kind not in KINDS:
        raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    checked = _check_settings(settings or {})
    owner = tenant_id or tenants.tenant_id()  # in-process callers act for their tenant
    with transaction() as tx:
        return ConversationOut.model_validate(conversations.create(tx, kind, title, checked, owner))


def _load(tx: Tx, conversation_id: uuid.UUID | str, *, lock: bool = False) -> Any:
    found = conversations.get(tx, ids.conversation(conversation_id), lock=lock)
    if found is None:
        raise ConversationNotFound(conversation_id)
    return found


def get_conversation(conversation_id: uuid.UUID | str) -> ConversationOut:
    with reader() as tx:
        return ConversationOut.model_validate(_load(tx, conversation_id))


def add_participant(
    conversation_id: uuid.UUID | str,
    *,
    agent: uuid.UUID | str | None = None,
    user_id: str | None = None,
    display_name: str | None = None,
) -> ParticipantOut:
    """Add an agent (by id or name) or a user (by the producer's own id) to a conversation.

    Adding the same agent or user again returns the existing participant.
    """
    if (agent is None) == (user_id is None):
        raise InvalidInput("participant", "give exactly one of agent or user_id")
    with transaction() as tx:
        conv = _load(tx, conversation_id, lock=True)
        if agent is not None:
            # Only an agent of the conversation's own tenant may join it.
            a = agents.find(tx, agent, tenant_id=conv.tenant_id)
            existing = conversations.participant(tx, conv.id, agent_id=a.id)
            if existing is not None:
                return ParticipantOut.model_validate(existing)
            if conv.kind == ConversationKind.DM and conversations.agent_count(tx, conv.id) >= 1:
                raise Conflict(f"conversation {conv.id} is a DM and already has its agent")
            added = conversations.add_participant(
                tx,
                conv.id,
                ParticipantKind.AGENT,
                display_name or a.name,
                agent_id=a.id,
                now=utcnow(),
            )
        else:
            if not user_id or len(user_id) > 200:
                raise InvalidInput("user_id", "must be 1 to 200 characters")
            existing = conversations.participant(tx, conv.id, user_id=user_id)
            if existing is not None:
                return ParticipantOut.model_validate(existing)
            added = conversations.add_participant(
                tx,
                conv.id,
                ParticipantKind.USER,
                display_name or str(user_id),
                user_id=user_id,
                now=utcnow(),
            )
        return ParticipantOut.model_validate(added)


def list_participants(conversation_id: uuid.UUID | str) -> list[ParticipantOut]:
    with reader() as tx:
        conv = _load(tx, conversation_id)
        return [ParticipantOut.model_validate(p) for p in conversations.participants(tx, conv.id)]


def start_session(agent: uuid.UUID | str, user_id: str) -> tuple[ConversationOut, ParticipantOut]:
    """A DM of one user with one agent: each user's session is isolated from the others'.

    Returns the conversation and the user's participant (the author id to post with).
    """
    conv = create_conversation("dm", title=f"session {user_id}")
    add_participant(conv.id, agent=agent)
    user = add_participant(conv.id, user_id=user_id)
    return conv, user


def list_messages(
    conversation_id: uuid.UUID | str, *, after_seq: int = 0, limit: int = 100
) -> list[MessageOut]:
    """Messages of a conversation with seq > `after_seq`, oldest first (soft-deleted left out)."""
    if not 0 <= after_seq <= MAX_SEQ:
        raise InvalidInput("after_seq", f"must be between 0 and {MAX_SEQ}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    with reader() as tx:
        conv = _load(tx, conversation_id)
        return [MessageOut.model_validate(m) for m in messages.page(tx, conv.id, after_seq, limit)]
