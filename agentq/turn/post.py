"""Post: a message and its `message.created` event, in one transaction (a transactional
outbox). After commit, the event is published and the debounce timer armed. A tenant
with its limit's worth of messages pending is refused first (`runtime.backpressure`)."""

from __future__ import annotations

import hashlib
import uuid

from agentq import events
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import (
    Conflict,
    ContentTooLong,
    ConversationNotFound,
    EmptyContent,
    InvalidInput,
    NotAParticipant,
)
from agentq.runtime import backpressure
from agentq.schemas import PostedMessage
from agentq.states import ParticipantKind, Role
from agentq.store import conversations, messages, tenants, writes
from agentq.store.session import Tx
from agentq.turn import debounce
from agentq.turn.outcome import Effects

#: the longest idempotency key
MAX_IDEMPOTENCY_KEY = 200


def check_content(content: object) -> str:
    """`content` if a message may carry it; else the error naming what is wrong."""
    if not isinstance(content, str):
        raise InvalidInput("content", f"must be a string, not {type(content).__name__}")
    if not content.strip():
        raise EmptyContent()
    limit = get_settings().max_content_length
    if len(content) > limit:
        raise ContentTooLong(len(content), limit)
    if "\x00" in content:
        raise InvalidInput("content", "must not contain NUL characters")
    check_encodable("content", content)
    return content


def check_idempotency_key(key: str | None) -> str | None:
    if key is not None:
        if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
            raise InvalidInput("idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        check_encodable("idempotency_key", key)
    return key


def check_encodable(name: str, value: str) -> None:
    # A lone surrogate (e.g. half an emoji from a bad JSON escape) cannot be stored.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            name, f"must be valid Unicode: lone surrogate {value[exc.start]!r} at {exc.start}"
        ) from None


def _request_hash(author_id: uuid.UUID, content: str) -> str:
    return hashlib.sha256(f"{author_id}\n{content}".encode()).hexdigest()


def post(
    tx: Tx,
    conv_id: uuid.UUID,
    author_id: uuid.UUID | None,
    content: str,
    idempotency_key: str | None,
    *,
    shown_id: object = None,
) -> tuple[PostedMessage, Effects]:
    """Add a checked message by `author_id` to the conversation, opening or extending its
    debounce window. With an `idempotency_key` used before for the same author and content,
    the first message (`duplicate=True`); with other content, Conflict. Overloaded if
    the conversation's tenant has its limit's worth of messages pending. `shown_id` is the
    author id as the caller gave it, for errors."""
    now = utcnow()
    conv = conversations.lock_for_post(tx, conv_id, author_id)
    if conv is None:
        raise ConversationNotFound(conv_id)
    kind = conv.author_kind
    if kind is None and author_id is not None:
        # Read again after the lock: the locking statement's read (PostgreSQL) saw the
        # snapshot from before its wait, which misses a join that held the lock meanwhile.
        kind = conversations.participant_kind(tx, conv_id, author_id)
    if author_id is None or kind is None:
        raise NotAParticipant(shown_id if shown_id is not None else author_id, conv_id)
    digest = _request_hash(author_id, content) if idempotency_key else None
    if idempotency_key:
        earlier = messages.by_idempotency_key(tx, conv_id, idempotency_key)
        if earlier is not None:
            if earlier.request_hash != digest:
                raise Conflict(
                    f"idempotency key {idempotency_key!r} was used with a different body"
                )
            posted = PostedMessage.model_validate(earlier).model_copy(update={"duplicate": True})
            return posted, Effects(conv_id)
    # Last of the checks, as it takes a place in the tenant's count (Overloaded: nothing
    # written). The conversation's lock is held: the post stays in order either way.
    tenant = None
    if conv.tenant_id is not None:
        tenant = tenants.Limits(conv.tenant_id, conv.tenant_name, conv.tenant_max_pending_messages)
    backpressure.admit(tx, tenant)
    role = Role.ASSISTANT if kind == ParticipantKind.AGENT else Role.USER
    written = writes.message(
        tx,
        conv,
        role=role,
        content=content,
        author_id=author_id,
        idempotency_key=idempotency_key,
        request_hash=digest,
        needs_dispatch=True,
        now=now,
        events=lambda msg_id, seq: [
            events.MessageCreated(
                conversation_id=conv_id, message_id=msg_id, seq=seq, role=role, author_id=author_id
            )
        ],
    )
    posted = PostedMessage(
        id=written.message_id,
        conversation_id=conv_id,
        seq=written.seq,
        author_id=author_id,
        role=role,
        content=content,
        reply_to_job_id=None,
        created_at=now,
    )
    return posted, Effects(
        conv_id,
        events=written.events,
        due=debounce.due(conv.settings, conv.pending_since or now, now),
    )
