"""The `agent_conversation_context` table: each agent's mapped history of a conversation,
a cache that the next call rebuilds if it is lost."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, select, update

from agentq.store import tables
from agentq.store.session import Record, Tx

CTX = tables.contexts

#: the cached history of an agent in a conversation
_CACHED = select(CTX.c.id, CTX.c.last_seq, CTX.c.messages).where(
    CTX.c.agent_id == bindparam("agent_id"), CTX.c.conversation_id == bindparam("conv_id")
)
_INSERT = insert(CTX)
_UPDATE = update(CTX).where(CTX.c.id == bindparam("cache_id"))


class Cached(NamedTuple):
    """An agent's cached history of a conversation."""

    id: uuid.UUID
    #: the newest seq folded into `messages`
    last_seq: int
    messages: list[dict[str, Any]]


def cached(tx: Tx, agent_id: uuid.UUID, conv_id: uuid.UUID) -> Cached | None:
    """The agent's cached history, if any (`agentq.store.jobs.for_call` reads it with the
    job instead: no statement of its own)."""
    row: Record | None = (
        tx.connection().execute(_CACHED, {"agent_id": agent_id, "conv_id": conv_id}).first()
    )
    return None if row is None else Cached(row.id, row.last_seq, row.messages)


class Pending(NamedTuple):
    """A cache write a call defers to its reply's statement (`agentq.store.writes`)."""

    cache_id: uuid.UUID | None
    agent_id: uuid.UUID
    conversation_id: uuid.UUID
    last_seq: int
    messages: list[dict[str, Any]]


#: the columns of a cache's row (`row`)
ROW_COLUMNS = ("id", "agent_id", "conversation_id", "last_seq", "messages", "updated_at")


def row(pending: Pending, now: datetime) -> dict[str, Any]:
    """The row `pending` writes (`ROW_COLUMNS`; a new id if there is none yet)."""
    return {
        "id": pending.cache_id or uuid.uuid4(),
        "agent_id": pending.agent_id,
        "conversation_id": pending.conversation_id,
        "last_seq": pending.last_seq,
        "messages": pending.messages,
        "updated_at": now,
    }


def write(tx: Tx, pending: Pending, now: datetime) -> None:
    """Write `pending` on its own (`agentq.store.writes` folds it into a reply)."""
    save(
        tx,
        pending.cache_id,
        pending.agent_id,
        pending.conversation_id,
        pending.last_seq,
        pending.messages,
        now,
    )


def save(
    tx: Tx,
    cache_id: uuid.UUID | None,
    agent_id: uuid.UUID,
    conv_id: uuid.UUID,
    last_seq: int,
    messages: list[dict[str, Any]],
    now: datetime,
) -> None:
    """Store the agent's history up to `last_seq` (a new row when `cache_id` is None)."""
    values = {"last_seq": last_seq, "messages": messages, "updated_at": now}
    if cache_id is None:
        row = {"id": uuid.uuid4(), "agent_id": agent_id, "conversation_id": conv_id, **values}
        tx.connection().execute(_INSERT, row)
    else:
        tx.connection().execute(_UPDATE, {"cache_id": cache_id, **values})
