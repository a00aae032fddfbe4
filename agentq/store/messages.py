"""The `messages` and `llm_messages` tables: a conversation's messages, numbered by `seq`.

A message is written with its conversation's numbering in one transaction: the caller
holds the conversation's row lock (`agentq.store.conversations`) and passes its row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, exists, insert, or_, select, update

from agentq.states import UNFINISHED_JOB_STATES, Role
from agentq.store import conversations, tables
from agentq.store.session import Record, Tx

M, P, LM, C, J = (
    tables.messages,
    tables.participants,
    tables.llm_messages,
    tables.conversations,
    tables.jobs,
)
_COLUMNS = (M.c.id, M.c.seq, M.c.author_id, M.c.role, M.c.content, M.c.deleted_at)

_INSERT = insert(M)
_INSERT_LLM = insert(LM)
#: the message posted earlier with an idempotency key
_BY_IDEMPOTENCY_KEY = select(M).where(
    M.c.conversation_id == bindparam("conv_id"), M.c.idempotency_key == bindparam("key")
)
#: the messages after a seq, oldest first (what dispatch turns into jobs)
_AFTER = (
    select(*_COLUMNS)
    .where(M.c.conversation_id == bindparam("conv_id"), M.c.seq > bindparam("after"))
    .order_by(M.c.seq)
)
#: the newest visible messages after a seq, newest first, as a prompt reads them: up to
#: the job's last trigger, and past it only replies (a message past it that is not a reply
#: is a later job's to answer)
HISTORY = (
    select(M.c.seq, M.c.role, M.c.content, P.c.agent_id, P.c.display_name)
    .outerjoin(P, M.c.author_id == P.c.id)
    .where(
        M.c.conversation_id == bindparam("conv_id"),
        M.c.seq > bindparam("after"),
        or_(M.c.seq <= bindparam("upto"), M.c.reply_to_job_id.is_not(None)),
        M.c.deleted_at.is_(None),
        M.c.role != Role.SYSTEM,
    )
    .order_by(M.c.seq.desc())
    .limit(bindparam("limit"))
)
#: a page of visible messages after a seq, oldest first
_PAGE = (
    select(M)
    .where(
        M.c.conversation_id == bindparam("conv_id"),
        M.c.seq > bindparam("after"),
        M.c.deleted_at.is_(None),
    )
    .order_by(M.c.seq)
    .limit(bindparam("limit"))
)


class Numbering(Protocol):
    """A conversation's numbering and debounce window, locked by the caller."""

    id: uuid.UUID
    last_seq: int
    handled_seq: int
    pending_since: datetime | None


#: the columns of a message's row (`row`)
ROW_COLUMNS = (
    "id",
    "conversation_id",
    "seq",
    "author_id",
    "role",
    "content",
    "reply_to_job_id",
    "idempotency_key",
    "request_hash",
    "created_at",
    "updated_at",
)
#: the columns of an `llm_messages` row (`llm_row`)
LLM_ROW_COLUMNS = (
    "id",
    "message_id",
    "role",
    "content",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "created_at",
)


def window(conv: Numbering, seq: int, needs_dispatch: bool, now: datetime) -> dict[str, Any]:
    """The conversation's window columns once message `seq` is added (see
    `insert_message`)."""
    if needs_dispatch:
        return {"pending_since": conv.pending_since or now, "last_message_at": now}
    if conv.handled_seq == conv.last_seq:
        return {"handled_seq": seq}
    return {}


def row(
    msg_id: uuid.UUID,
    conv_id: uuid.UUID,
    seq: int,
    *,
    role: Role,
    content: str,
    author_id: uuid.UUID | None,
    now: datetime,
    reply_to_job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> dict[str, Any]:
    """A message's row (`ROW_COLUMNS`)."""
    return {
        "id": msg_id,
        "conversation_id": conv_id,
        "seq": seq,
        "author_id": author_id,
        "role": role,
        "content": content,
        "reply_to_job_id": reply_to_job_id,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "created_at": now,
        "updated_at": now,
    }


def llm_row(message_id: uuid.UUID, answer: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The `llm_messages` row of a reply (`LLM_ROW_COLUMNS`)."""
    return {
        "id": uuid.uuid4(),
        "message_id": message_id,
        "role": Role.ASSISTANT,
        "content": answer["content"],
        "model": answer.get("model"),
        "prompt_tokens": answer.get("prompt_tokens", 0),
        "completion_tokens": answer.get("completion_tokens", 0),
        "latency_ms": answer.get("latency_ms", 0),
        "created_at": now,
    }


def insert_message(
    tx: Tx,
    conv: Numbering,
    *,
    role: Role,
    content: str,
    author_id: uuid.UUID | None,
    needs_dispatch: bool,
    now: datetime,
    reply_to_job_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    message_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, int]:
    """Add a message with the conversation's next seq; (id, seq).

    A message that `needs_dispatch` opens or extends the debounce window; one that does not
    (a reply nobody else answers, a system notice) is marked handled at once when nothing
    else is pending, so that it costs no dispatch. The caller records `message.created`.
    (`agentq.store.writes.message` does all that and more in one statement.)
    """
    seq = conv.last_seq + 1
    conversations.update_numbering(tx, conv.id, seq, now, **window(conv, seq, needs_dispatch, now))
    msg_id = message_id or uuid.uuid4()
    values = row(
        msg_id,
        conv.id,
        seq,
        role=role,
        content=content,
        author_id=author_id,
        now=now,
        reply_to_job_id=reply_to_job_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    tx.connection().execute(_INSERT, values)
    return msg_id, seq


def insert_llm_message(
    tx: Tx, message_id: uuid.UUID, answer: dict[str, Any], now: datetime
) -> None:
    """The provider's side of a reply: model, token counts, latency."""
    tx.connection().execute(_INSERT_LLM, llm_row(message_id, answer, now))


def by_idempotency_key(tx: Tx, conv_id: uuid.UUID, key: str) -> Record | None:
    """The message posted with `key` in the conversation, if any."""
    return tx.connection().execute(_BY_IDEMPOTENCY_KEY, {"conv_id": conv_id, "key": key}).first()


def after(tx: Tx, conv_id: uuid.UUID, seq: int) -> list[Record]:
    """(id, seq, author_id, role, content, deleted_at) of the messages after `seq`."""
    return list(tx.connection().execute(_AFTER, {"conv_id": conv_id, "after": seq}))


#: `_AFTER`, each row with whether a job of the conversation is unfinished
_AFTER_UNFINISHED = _AFTER.add_columns(
    exists()
    .where(J.c.conversation_id == bindparam("conv_id"), J.c.status.in_(UNFINISHED_JOB_STATES))
    .label("unfinished")
)
#: the same, marking the conversation's messages up to `handled` dispatched in the same
#: statement (its window closes): the read sees the messages as they were before it; with
#: the conversation's agents (`members`), read after the lock like the rest
_TAKE = _AFTER_UNFINISHED.add_columns(conversations.MEMBERS_JSON.label("members")).add_cte(
    update(C)
    .where(C.c.id == bindparam("conv_id"))
    .values(handled_seq=bindparam("handled"), pending_since=None, updated_at=bindparam("now"))
    .cte("handled")
)


def take(
    tx: Tx, conv_id: uuid.UUID, seq: int, handled: int, now: datetime
) -> tuple[list[Record], list[conversations.Member] | None]:
    """The messages after `seq` (as `after`), each with `unfinished`: whether a job of the
    conversation is unfinished; and the conversation's messages up to `handled` are
    dispatched (`conversations.mark_handled`). One statement on PostgreSQL, which also
    reads the conversation's agents (else None: read them with `conversations.agents`).
    The caller holds the conversation locked (under which every job of it is made or
    finished), so `unfinished` holds until it commits."""
    conn = tx.connection()
    params = {"conv_id": conv_id, "after": seq, "handled": handled, "now": now}
    if conn.dialect.name != "postgresql":
        rows = list(conn.execute(_AFTER_UNFINISHED, params))
        conversations.mark_handled(tx, conv_id, handled)
        return rows, None
    rows = list(conn.execute(_TAKE, params))
    return rows, conversations.members_of_json(rows[0].members) if rows else []


def history(tx: Tx, conv_id: uuid.UUID, after: int, upto: int, limit: int) -> list[Record]:
    """(seq, role, content, agent_id, display_name) of the last `limit` visible messages
    after `after`: up to `upto`, and replies past it; newest first. `agent_id` is the
    author's agent, if any."""
    params = {"conv_id": conv_id, "after": after, "upto": upto, "limit": limit}
    return list(tx.connection().execute(HISTORY, params))


def page(tx: Tx, conv_id: uuid.UUID, after: int, limit: int) -> list[Record]:
    """Visible messages with seq > `after`, oldest first, at most `limit`."""
    params = {"conv_id": conv_id, "after": after, "limit": limit}
    return list(tx.connection().execute(_PAGE, params))


def reply_of(tx: Tx, job_id: uuid.UUID) -> Record | None:
    """The reply a job wrote, if any."""
    return tx.connection().execute(select(M).where(M.c.reply_to_job_id == job_id)).first()
