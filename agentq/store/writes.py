"""A step's closing writes in one round trip: a message with its conversation's numbering
and its events (a post), and for a reply also its `llm_messages` and `message_jobs` rows,
its agent's freed slot and the context cache its call read (issue 19: fewer statements a
turn).

On PostgreSQL each group is ONE statement of data-modifying CTEs (`WITH n AS (UPDATE
conversations ...), m AS (INSERT INTO messages ...), ... INSERT INTO events ... RETURNING
id`): it writes all of them or none, like the statements it replaces, in the caller's
transaction. Its parts share one snapshot and cannot read each other's rows, so none of
them reads what another writes (the agent's freed slot counts the agent's running jobs:
the statement before it finished this one). Foreign keys between the parts (a reply's
`llm_messages` row to its message) are checked at the statement's end, when all are
written. Locks: the caller holds the conversation (and the reply's job) already; the
agent row is the one new lock, last, as the lock order wants (`agentq.store.session`).

On SQLite (no writes in WITH) the same writes are the table modules' statements, one
after the other. Each statement shape is built once and kept (building a Core statement
costs about as much CPU as running it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from agentq.events import Event
from agentq.states import LinkStatus, Role
from agentq.store import agents, contexts, jobs, messages, outbox, tables
from agentq.store.outbox import Recorded
from agentq.store.session import Record, Tx

C, M, LM, L, A, E, CTX = (
    tables.conversations,
    tables.messages,
    tables.llm_messages,
    tables.message_jobs,
    tables.agents,
    tables.events,
    tables.contexts,
)


@dataclass(frozen=True)
class Reply:
    """A job's reply: the answer it writes and the agent whose slot it frees."""

    job_id: uuid.UUID
    agent_id: uuid.UUID
    answer: dict[str, Any]


@dataclass(frozen=True)
class Written:
    """What `message` wrote."""

    message_id: uuid.UUID
    seq: int
    #: the events stored, to publish after commit
    events: list[Recorded]
    #: for a reply, the agent after freeing its slot: (status, max_concurrent_jobs)
    agent: Record | None = None


def message(
    tx: Tx,
    conv: messages.Numbering,
    *,
    role: Role,
    content: str,
    author_id: uuid.UUID | None,
    needs_dispatch: bool,
    now: datetime,
    events: Callable[[uuid.UUID, int], Sequence[Event]],
    reply: Reply | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    cache: contexts.Pending | None = None,
) -> Written:
    """Add a message with the conversation's next seq (as `messages.insert_message` does)
    and the events `events(message_id, seq)` tells of it; with `reply`, the message is the
    job's reply: its `llm_messages` and `message_jobs` rows too, and its agent's slot is
    freed (`agents.free_slot(responded_at=now)`); with `cache`, the context cache its call
    read is written too (an upsert that never moves it back). One statement on
    PostgreSQL."""
    conn = tx.connection()
    msg_id, seq = uuid.uuid4(), conv.last_seq + 1
    batch = events(msg_id, seq)
    if conn.dialect.name != "postgresql":
        messages.insert_message(
            tx,
            conv,
            role=role,
            content=content,
            author_id=author_id,
            needs_dispatch=needs_dispatch,
            now=now,
            reply_to_job_id=reply.job_id if reply else None,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            message_id=msg_id,
        )
        agent = None
        if reply is not None:
            messages.insert_llm_message(tx, msg_id, reply.answer, now)
            jobs.link_reply(tx, msg_id, reply.job_id, reply.agent_id, conv.id, now)
            agent = agents.free_slot(tx, reply.agent_id, responded_at=now)
        if cache is not None:
            contexts.write(tx, cache, now)
        return Written(msg_id, seq, outbox.insert_events(tx, batch), agent)

    window = messages.window(conv, seq, needs_dispatch, now)
    rows = outbox.rows(batch, now)
    params: dict[str, Any] = {
        "conv_id": conv.id,
        "now": now,
        "n_last_seq": seq,
        **{f"n_{k}": v for k, v in window.items()},
        **_prefixed(
            "m_",
            messages.row(
                msg_id,
                conv.id,
                seq,
                role=role,
                content=content,
                author_id=author_id,
                reply_to_job_id=reply.job_id if reply else None,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                now=now,
            ),
        ),
    }
    for i, row in enumerate(rows):
        params.update(_prefixed(f"e{i}_", row))
    if reply is not None:
        params.update(_prefixed("l_", messages.llm_row(msg_id, reply.answer, now)))
        params.update(
            _prefixed(
                "k_",
                jobs.link_row(msg_id, reply.job_id, reply.agent_id, conv.id, LinkStatus.REPLY, now),
            )
        )
        params["agent_id"] = reply.agent_id
        params["updated_at"] = now  # the agent's (the onupdate default is not applied in a CTE)
    if cache is not None:
        params.update(_prefixed("c_", contexts.row(cache, now)))
    shape = (tuple(sorted(window)), len(rows), reply is not None, cache is not None)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _STATEMENTS[shape] = _statement(*shape)
    result = list(conn.execute(statement, params))
    ids = sorted(r.id for r in result if r.id is not None)  # a sequence: in VALUES order
    agent = result[0] if reply is not None else None
    return Written(msg_id, seq, outbox.recorded(ids, rows), agent)


def _prefixed(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in row.items()}


def _values(table: Table, prefix: str, columns: Sequence[str]) -> dict[Any, Any]:
    """VALUES of `columns`, bound to `<prefix><column>` with the column's type."""
    return {table.c[c]: bindparam(prefix + c, type_=table.c[c].type) for c in columns}


_STATEMENTS: dict[tuple[tuple[str, ...], int, bool, bool], Any] = {}


def _statement(window: tuple[str, ...], n_events: int, reply: bool, cache: bool) -> Any:
    assert n_events > 0, "a message is always told of by an event"
    numbering = (
        update(C)
        .where(C.c.id == bindparam("conv_id"))
        .values(
            last_seq=bindparam("n_last_seq", type_=C.c.last_seq.type),
            updated_at=bindparam("now"),
            **{k: bindparam(f"n_{k}", type_=C.c[k].type) for k in window},
        )
        .cte("numbering")
    )
    written = [numbering, insert(M).values(_values(M, "m_", messages.ROW_COLUMNS)).cte("message")]
    if cache:
        new = pg_insert(CTX).values(_values(CTX, "c_", contexts.ROW_COLUMNS))
        cached = new.on_conflict_do_update(
            index_elements=[CTX.c.agent_id, CTX.c.conversation_id],
            set_={c: new.excluded[c] for c in ("last_seq", "messages", "updated_at")},
            where=CTX.c.last_seq <= new.excluded.last_seq,
        )
        written.append(cached.cte("cache"))
    if reply:
        written.append(insert(LM).values(_values(LM, "l_", messages.LLM_ROW_COLUMNS)).cte("llm"))
        written.append(insert(L).values(_values(L, "k_", jobs.LINK_ROW_COLUMNS)).cte("link"))
    events = tables.rows_of(E, outbox.ROW_COLUMNS, [f"e{i}_" for i in range(n_events)])
    stored = insert(E).from_select(outbox.ROW_COLUMNS, events).returning(E.c.id).cte("stored")
    if not reply:
        return select(stored.c.id).add_cte(*written)
    freed = (
        agents.free_slot_statement(responded=True)
        .values(updated_at=bindparam("updated_at"))
        .returning(A.c.status, A.c.max_concurrent_jobs)
        .cte("freed")
    )
    # One row a stored event, each with the agent (a reply always stores events).
    return (
        select(stored.c.id, freed.c.status, freed.c.max_concurrent_jobs)
        .select_from(freed.outerjoin(stored, true()))
        .add_cte(*written)
    )
