"""Conversations and who takes part in them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agentq.errors import Conflict, ConversationNotFound, InvalidInput
from agentq.ops.agents import load_agent
from agentq.schemas import ConversationOut, ParticipantOut
from agentq.store.models import Conversation, Participant
from agentq.store.session import ROW_LOCK, reader, transaction

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
    with transaction() as session:
        conv = Conversation(kind=kind, title=title, settings=checked, tenant_id=tenant_id)
        session.add(conv)
        session.flush()
        return ConversationOut.model_validate(conv)


def conversation_uuid(conversation_id: uuid.UUID | str) -> uuid.UUID:
    """`conversation_id` as a UUID; one that cannot be is a conversation not found."""
    try:
        return uuid.UUID(str(conversation_id))
    except ValueError:
        raise ConversationNotFound(conversation_id) from None


def load_conversation(
    session: Any, conversation_id: uuid.UUID | str, *, lock: bool = False
) -> Conversation:
    cid = conversation_uuid(conversation_id)
    conv = session.get(Conversation, cid, with_for_update=ROW_LOCK if lock else None)
    if conv is None:
        raise ConversationNotFound(conversation_id)
    return conv


def get_conversation(conversation_id: uuid.UUID | str) -> ConversationOut:
    with reader() as session:
        return ConversationOut.model_validate(load_conversation(session, conversation_id))


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
    with transaction() as session:
        conv = load_conversation(session, conversation_id, lock=True)
        if agent is not None:
            a = load_agent(session, agent)
            existing = session.scalar(
                select(Participant).where(
                    Participant.conversation_id == conv.id, Participant.agent_id == a.id
                )
            )
            if existing:
                return ParticipantOut.model_validate(existing)
            if conv.kind == "dm" and _agent_count(session, conv.id) >= 1:
                raise Conflict(f"conversation {conv.id} is a DM and already has its agent")
            p = Participant(
                conversation_id=conv.id,
                kind="agent",
                agent_id=a.id,
                display_name=display_name or a.name,
            )
        else:
            if not user_id or len(user_id) > 200:
                raise InvalidInput("user_id", "must be 1 to 200 characters")
            existing = session.scalar(
                select(Participant).where(
                    Participant.conversation_id == conv.id, Participant.user_id == user_id
                )
            )
            if existing:
                return ParticipantOut.model_validate(existing)
            p = Participant(
                conversation_id=conv.id,
                kind="user",
                user_id=user_id,
                display_name=display_name or user_id,
            )
        session.add(p)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict("that participant was added concurrently; read it again") from None
        return ParticipantOut.model_validate(p)


def _agent_count(session: Any, conversation_id: uuid.UUID) -> int:
    return len(
        session.scalars(
            select(Participant.id).where(
                Participant.conversation_id == conversation_id, Participant.kind == "agent"
            )
        ).all()
    )


def list_participants(conversation_id: uuid.UUID | str) -> list[ParticipantOut]:
    with reader() as session:
        conv = load_conversation(session, conversation_id)
        rows = session.scalars(
            select(Participant)
            .where(Participant.conversation_id == conv.id)
            .order_by(Participant.joined_at)
        )
        return [ParticipantOut.model_validate(p) for p in rows]


def start_session(agent: uuid.UUID | str, user_id: str) -> tuple[ConversationOut, ParticipantOut]:
    """A DM of one user with one agent: each user's session is isolated from the others'.

    Returns the conversation and the user's participant (the author id to post with).
    """
    conv = create_conversation("dm", title=f"session {user_id}")
    add_participant(conv.id, agent=agent)
    user = add_participant(conv.id, user_id=user_id)
    return conv, user
