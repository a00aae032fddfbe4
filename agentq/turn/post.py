"""Posting messages: the message row and its `message.created` event in one transaction
(a transactional outbox), then, after commit, publishing and arming the debounce timer."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.orm import Session

from agentq import events
from agentq.config import get_settings
from agentq.errors import (
    Conflict,
    ContentTooLong,
    ConversationNotFound,
    EmptyContent,
    InvalidInput,
    NotAParticipant,
)
from agentq.ops.conversations import conversation_uuid, load_conversation
from agentq.schemas import MessageOut, PostedMessage
from agentq.store import tables
from agentq.store.models import Conversation, Event, Message, utcnow
from agentq.store.session import reader, transaction
from agentq.turn import debounce

#: seq is a 32-bit integer column
MAX_SEQ = 2**31 - 1


def check_content(content: object) -> str:
    if not isinstance(content, str):
        raise InvalidInput("content", f"must be a string, not {type(content).__name__}")
    if not content.strip():
        raise EmptyContent()
    limit = get_settings().max_content_length
    if len(content) > limit:
        raise ContentTooLong(len(content), limit)
    if "\x00" in content:
        raise InvalidInput("content", "must not contain NUL characters")
    _check_encodable("content", content)
    return content


def _check_encodable(name: str, value: str) -> None:
    # A lone surrogate (e.g. half an emoji from a bad JSON escape) cannot be stored.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            name, f"must be valid Unicode: lone surrogate {value[exc.start]!r} at {exc.start}"
        ) from None


def _request_hash(author_id: uuid.UUID, content: str) -> str:
    return hashlib.sha256(f"{author_id}\n{content}".encode()).hexdigest()


def append_message(
    session: Session,
    conv: Conversation,
    *,
    role: str,
    content: str,
    author_id: uuid.UUID | None,
    reply_to_job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    needs_dispatch: bool = True,
) -> tuple[Message, Event]:
    """Add a message to `conv` (which the caller holds locked) with the next seq, and its
    `message.created` event. A message that `needs_dispatch` opens or extends the debounce
    window; one that does not (a reply nobody else will answer, a system notice) is marked
    handled at once when nothing else is pending, so that it costs no dispatch."""
    now = utcnow()
    conv.last_seq += 1
    msg = Message(
        conversation_id=conv.id,
        seq=conv.last_seq,
        author_id=author_id,
        role=role,
        content=content,
        reply_to_job_id=reply_to_job_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
        updated_at=now,
    )
    session.add(msg)
    if needs_dispatch:
        conv.pending_since = conv.pending_since or now
        conv.last_message_at = now
    elif conv.handled_seq == conv.last_seq - 1:
        conv.handled_seq = conv.last_seq
    session.flush()  # rows that refer to the message (links, llm_messages) come after it
    row = events.record(
        session,
        events.MessageCreated(
            conversation_id=conv.id,
            message_id=msg.id,
            seq=msg.seq,
            role=role,
            author_id=author_id,
        ),
    )
    return msg, row


#: the SET clause is the parameters' keys
_UPDATE_CONVERSATION = update(tables.conversations).where(
    tables.conversations.c.id == bindparam("conv_id")
)
_INSERT_MESSAGE = insert(tables.messages)


class SeqState(Protocol):
    """A conversation's numbering and debounce window, as `insert_message` reads them."""

    id: uuid.UUID
    last_seq: int
    handled_seq: int
    pending_since: datetime | None


def insert_message(
    conn: Connection,
    conv: SeqState,
    *,
    role: str,
    content: str,
    author_id: uuid.UUID | None,
    reply_to_job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    needs_dispatch: bool,
    now: datetime,
) -> tuple[uuid.UUID, int]:
    """`append_message` for the hot path, in Core: `conv` is the conversation's row
    (id, last_seq, handled_seq, pending_since), locked by the caller. The caller records
    the `message.created` event. Returns the message's id and seq."""
    seq = conv.last_seq + 1
    window: dict[str, Any]
    if needs_dispatch:
        window = {"pending_since": conv.pending_since or now, "last_message_at": now}
    elif conv.handled_seq == conv.last_seq:
        window = {"handled_seq": seq}
    else:
        window = {}
    conn.execute(
        _UPDATE_CONVERSATION, {"conv_id": conv.id, "last_seq": seq, "updated_at": now, **window}
    )
    msg_id = uuid.uuid4()
    conn.execute(
        _INSERT_MESSAGE,
        {
            "id": msg_id,
            "conversation_id": conv.id,
            "seq": seq,
            "author_id": author_id,
            "role": role,
            "content": content,
            "reply_to_job_id": reply_to_job_id,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "created_at": now,
            "updated_at": now,
        },
    )
    return msg_id, seq


def post_message(
    conversation_id: uuid.UUID | str,
    author_id: uuid.UUID | str,
    content: str,
    idempotency_key: str | None = None,
) -> PostedMessage:
    """Accept a message: it is in the database when this returns, and will be answered.

    Raises ConversationNotFound, NotAParticipant, EmptyContent, ContentTooLong or
    InvalidInput, having written nothing. With an `idempotency_key`, posting the same
    author and content again returns the first message (`duplicate=True`); the same key
    with other content raises Conflict.
    """
    content = check_content(content)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise InvalidInput("idempotency_key", "must be 1 to 200 characters")
    if idempotency_key is not None:
        _check_encodable("idempotency_key", idempotency_key)
    cid = conversation_uuid(conversation_id)
    try:
        pid: uuid.UUID | None = uuid.UUID(str(author_id))
    except ValueError:
        pid = None  # not a participant, once the conversation is known to exist
    now = utcnow()
    with transaction() as session:
        conn = session.connection()
        conv = conn.execute(_LOCK_FOR_POST, {"conv_id": cid, "author_id": pid}).first()
        if conv is None:
            raise ConversationNotFound(conversation_id)
        if pid is None or conv.author_kind is None:
            raise NotAParticipant(author_id, cid)
        digest = _request_hash(pid, content) if idempotency_key else None
        if idempotency_key:
            earlier = conn.execute(
                _BY_IDEMPOTENCY_KEY, {"conv_id": cid, "key": idempotency_key}
            ).first()
            if earlier is not None:
                if earlier.request_hash != digest:
                    raise Conflict(
                        f"idempotency key {idempotency_key!r} was used with a different body"
                    )
                return PostedMessage.model_validate(earlier).model_copy(update={"duplicate": True})
        role = "assistant" if conv.author_kind == "agent" else "user"
        msg_id, seq = insert_message(
            conn,
            conv,
            role=role,
            content=content,
            author_id=pid,
            idempotency_key=idempotency_key,
            request_hash=digest,
            needs_dispatch=True,
            now=now,
        )
        rows = events.insert(
            conn,
            [
                events.MessageCreated(
                    conversation_id=cid, message_id=msg_id, seq=seq, role=role, author_id=pid
                )
            ],
        )
    events.publish(rows)
    debounce.arm(cid, debounce.due(conv.settings, conv.pending_since or now, now))
    return PostedMessage(
        id=msg_id,
        conversation_id=cid,
        seq=seq,
        author_id=pid,
        role=role,
        content=content,
        reply_to_job_id=None,
        created_at=now,
    )


_C, _P, _M = tables.conversations, tables.participants, tables.messages
# `post_message`'s statements, built once.
#: lock the conversation, with the author's kind (None: not a participant of it)
_LOCK_FOR_POST = (
    select(
        _C.c.id,
        _C.c.settings,
        _C.c.last_seq,
        _C.c.handled_seq,
        _C.c.pending_since,
        select(_P.c.kind)
        .where(_P.c.id == bindparam("author_id"), _P.c.conversation_id == bindparam("conv_id"))
        .scalar_subquery()
        .label("author_kind"),
    )
    .where(_C.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True, of=_C)
)
_BY_IDEMPOTENCY_KEY = select(_M).where(
    _M.c.conversation_id == bindparam("conv_id"), _M.c.idempotency_key == bindparam("key")
)


def list_messages(
    conversation_id: uuid.UUID | str, *, after_seq: int = 0, limit: int = 100
) -> list[MessageOut]:
    """Messages of a conversation with seq > `after_seq`, oldest first (soft-deleted left out)."""
    if not 0 <= after_seq <= MAX_SEQ:
        raise InvalidInput("after_seq", f"must be between 0 and {MAX_SEQ}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    with reader() as session:
        conv = load_conversation(session, conversation_id)
        rows = session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conv.id,
                Message.seq > after_seq,
                Message.deleted_at.is_(None),
            )
            .order_by(Message.seq)
            .limit(limit)
        )
        return [MessageOut.model_validate(m) for m in rows]
