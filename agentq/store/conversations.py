"""The `conversations` and `participants` tables: a conversation's numbering (`last_seq`),
its debounce window (`pending_since`, `last_message_at`), how far dispatch got
(`handled_seq`), and who takes part.

A conversation's row lock is what makes its steps take turns: post, dispatch, claim and
reply each lock it, first (the lock order: see `agentq.store.session`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError

from agentq.clock import utcnow
from agentq.errors import Conflict
from agentq.states import ParticipantKind, Role
from agentq.store import tables
from agentq.store.session import Record, Tx

C, P, M, J, A, T = (
    tables.conversations,
    tables.participants,
    tables.messages,
    tables.jobs,
    tables.agents,
    tables.tenants,
)
_WINDOW = (C.c.id, C.c.kind, C.c.settings, C.c.last_seq, C.c.handled_seq, C.c.pending_since)

#: lock the conversation, with the author's kind (None: not a participant of it) and its
#: tenant as backpressure sees it (`agentq.store.tenants.Limits`), in one round trip
_LOCK_FOR_POST = (
    select(
        *_WINDOW,
        select(P.c.kind)
        .where(P.c.id == bindparam("author_id"), P.c.conversation_id == bindparam("conv_id"))
        .scalar_subquery()
        .label("author_kind"),
        C.c.tenant_id,
        T.c.name.label("tenant_name"),
        T.c.max_pending_messages.label("tenant_max_pending_messages"),
    )
    .select_from(C.outerjoin(T, T.c.id == C.c.tenant_id))
    .where(C.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True, of=C)
)
#: what a conversation's responder selection and a claim read of each of its agents
_MEMBER = (
    P.c.id.label("participant_id"),
    A.c.id,
    A.c.name,
    A.c.role,
    A.c.backstory,
    A.c.goal,
    A.c.status,
    A.c.max_concurrent_jobs,
    A.c.rate_limit_per_minute,
    A.c.tenant_id,
)
#: lock the conversation with its window, for dispatch. Its agents are read after the lock
#: (`agents`), not joined here: on PostgreSQL a joined read sees the snapshot taken before
#: a lock wait, and would miss an agent whose join held the lock
_LOCK_FOR_DISPATCH = (
    select(*_WINDOW, C.c.last_message_at)
    .where(C.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True)
)


class Member(NamedTuple):
    """An agent of a conversation, as responder selection and a claim read it."""

    participant_id: uuid.UUID
    id: uuid.UUID
    name: str
    role: str
    backstory: str
    goal: str
    status: str
    max_concurrent_jobs: int
    rate_limit_per_minute: int
    tenant_id: uuid.UUID


#: the job a reply answers (`job_id`), aliased apart from the jobs the reply lock counts
_THIS = tables.jobs.alias("this_job")
_THIS_AGENT = select(_THIS.c.agent_id).where(_THIS.c.id == bindparam("job_id")).scalar_subquery()
#: lock the conversation of job `job_id` before the job (the lock order), and read in the
#: same round trip the job's agent and that agent's participant (the reply's author: both
#: there before the job was made, so no lock wait can change them). What may change while
#: this waits for the lock (jobs made or ended by its holder) is read after it, by
#: `jobs.complete`: on PostgreSQL this statement's subqueries see the snapshot taken
#: before the wait
_LOCK_FOR_REPLY = (
    select(
        *_WINDOW,
        _THIS_AGENT.label("agent_id"),
        select(P.c.id)
        .where(P.c.conversation_id == C.c.id, P.c.agent_id == _THIS_AGENT)
        .scalar_subquery()
        .label("author_id"),
    )
    .where(
        C.c.id
        == select(_THIS.c.conversation_id)
        .where(_THIS.c.id == bindparam("job_id"))
        .scalar_subquery()
    )
    .with_for_update(key_share=True, of=C)
)
#: lock the conversation, with its window
_LOCK = select(*_WINDOW).where(C.c.id == bindparam("conv_id")).with_for_update(key_share=True)
#: every message up to `handled` is dispatched; the window closes
_MARK_HANDLED = (
    update(C)
    .where(C.c.id == bindparam("conv_id"))
    .values(handled_seq=bindparam("handled"), pending_since=None)
)
#: the SET clause is the parameters' keys
_UPDATE = update(C).where(C.c.id == bindparam("conv_id"))
#: the seq of the last human message
_LAST_HUMAN = select(func.max(M.c.seq)).where(
    M.c.conversation_id == bindparam("conv_id"), M.c.role == Role.USER
)
#: agent replies after a seq
_AGENT_TURNS = (
    select(func.count())
    .select_from(M)
    .where(
        M.c.conversation_id == bindparam("conv_id"),
        M.c.role == Role.ASSISTANT,
        M.c.seq > bindparam("after"),
    )
)
#: a conversation's agents with their participants, in joining order, with their limits
_AGENTS = (
    select(*_MEMBER)
    .join(A, P.c.agent_id == A.c.id)
    .where(P.c.conversation_id == bindparam("conv_id"), P.c.kind == ParticipantKind.AGENT)
    .order_by(P.c.joined_at)
)


def lock_for_post(tx: Tx, conv_id: uuid.UUID, author_id: uuid.UUID | None) -> Record | None:
    """The conversation locked, with `author_kind` (None if the author is not in it) and
    its tenant's `tenant_id`, `tenant_name` and `tenant_max_pending_messages`."""
    params = {"conv_id": conv_id, "author_id": author_id}
    return tx.connection().execute(_LOCK_FOR_POST, params).first()


def lock_batch(tx: Tx, conv_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Lock these conversations in id order, skipping those another transaction holds;
    returns the ids locked. (SQLite, one writer at a time, locks nothing: all.)"""
    if tx.connection().dialect.name == "sqlite":
        return set(conv_ids)
    query = (
        select(C.c.id)
        .where(C.c.id.in_(conv_ids))
        .order_by(C.c.id)
        .with_for_update(key_share=True, skip_locked=True)
    )
    return set(tx.connection().execute(query).scalars())


def lock_for_dispatch(tx: Tx, conv_id: uuid.UUID) -> Record | None:
    """The conversation and its window, locked; None if there is no such conversation."""
    return tx.connection().execute(_LOCK_FOR_DISPATCH, {"conv_id": conv_id}).first()


def lock_for_reply(tx: Tx, job_id: uuid.UUID, now: datetime) -> Record | None:
    """The conversation of the job, locked, with what writing its reply needs (see
    `_LOCK_FOR_REPLY`); None if there is no such job."""
    return tx.connection().execute(_LOCK_FOR_REPLY, {"job_id": job_id, "now": now}).first()


def lock(tx: Tx, conv_id: uuid.UUID) -> Record | None:
    """The conversation and its window, locked; None if there is none."""
    return tx.connection().execute(_LOCK, {"conv_id": conv_id}).first()


def mark_handled(tx: Tx, conv_id: uuid.UUID, handled: int) -> None:
    """Messages up to seq `handled` are dispatched; the debounce window closes."""
    tx.connection().execute(_MARK_HANDLED, {"conv_id": conv_id, "handled": handled})


def update_numbering(
    tx: Tx, conv_id: uuid.UUID, last_seq: int, now: datetime, **window: Any
) -> None:
    """The conversation's new `last_seq`, with its window columns as given."""
    params = {"conv_id": conv_id, "last_seq": last_seq, "updated_at": now, **window}
    tx.connection().execute(_UPDATE, params)


def agent_turns_since_human(tx: Tx, conv_id: uuid.UUID) -> int:
    """Agent replies since the last human message."""
    conn = tx.connection()
    last_human = conn.execute(_LAST_HUMAN, {"conv_id": conv_id}).scalar() or 0
    return int(conn.execute(_AGENT_TURNS, {"conv_id": conv_id, "after": last_human}).scalar() or 0)


def agent_turns(tx: Tx, conv_id: uuid.UUID) -> int:
    """Agent replies in the whole conversation."""
    return int(
        tx.connection().execute(_AGENT_TURNS, {"conv_id": conv_id, "after": 0}).scalar() or 0
    )


#: the conversation's agents as one JSON array (PostgreSQL), for a statement that reads them
#: besides its own rows: `messages.take`, after the conversation's lock
MEMBERS_JSON = (
    select(func.json_agg(aggregate_order_by(func.json_build_array(*_MEMBER), P.c.joined_at)))
    .select_from(P.join(A, P.c.agent_id == A.c.id))
    .where(P.c.conversation_id == bindparam("conv_id"), P.c.kind == ParticipantKind.AGENT)
    .scalar_subquery()
)


def members_of_json(value: list[list[Any]] | None) -> list[Member]:
    """`MEMBERS_JSON`'s array as `agents` returns it."""
    ids = (0, 1, 9)  # participant_id, id and tenant_id come as text
    return [
        Member._make(uuid.UUID(v) if i in ids else v for i, v in enumerate(m)) for m in value or []
    ]


def agents(tx: Tx, conv_id: uuid.UUID) -> list[Member]:
    """The conversation's agents, in joining order."""
    return [Member._make(r) for r in tx.connection().execute(_AGENTS, {"conv_id": conv_id})]


def pending_windows(tx: Tx, limit: int) -> list[Record]:
    """Conversations with messages not dispatched yet, oldest window first."""
    query = (
        select(C.c.id, C.c.pending_since, C.c.last_message_at, C.c.settings)
        .where(C.c.pending_since.is_not(None))
        .order_by(C.c.pending_since)
        .limit(limit)
    )
    return list(tx.connection().execute(query))


# -- conversations and participants, for producers and operators ---------------------------


def create(
    tx: Tx,
    kind: str,
    title: str | None,
    settings: dict[str, Any],
    tenant_id: uuid.UUID | None,
) -> Record:
    """A new conversation; its row."""
    now = utcnow()
    values = {
        "id": uuid.uuid4(),
        "kind": kind,
        "title": title,
        "settings": settings,
        "tenant_id": tenant_id,
        "last_seq": 0,
        "handled_seq": 0,
        "created_at": now,
        "updated_at": now,
    }
    return tx.connection().execute(insert(C).values(values).returning(C)).one()


def get(tx: Tx, conv_id: uuid.UUID, *, lock: bool = False) -> Record | None:
    """The conversation's row (locked with `lock`)."""
    query = select(C).where(C.c.id == conv_id)
    if lock:
        query = query.with_for_update(key_share=True)
    return tx.connection().execute(query).first()


def participant_kind(tx: Tx, conv_id: uuid.UUID, participant_id: uuid.UUID) -> str | None:
    """The kind of the conversation's participant `participant_id`; None if it is not one."""
    query = select(P.c.kind).where(P.c.id == participant_id, P.c.conversation_id == conv_id)
    return tx.connection().execute(query).scalar()


def participant(
    tx: Tx, conv_id: uuid.UUID, *, agent_id: uuid.UUID | None = None, user_id: str | None = None
) -> Record | None:
    """The conversation's participant for an agent or a user."""
    query = select(P).where(P.c.conversation_id == conv_id)
    query = query.where(P.c.agent_id == agent_id if agent_id else P.c.user_id == user_id)
    return tx.connection().execute(query).first()


def agent_count(tx: Tx, conv_id: uuid.UUID) -> int:
    """How many agents take part."""
    query = select(func.count()).where(
        P.c.conversation_id == conv_id, P.c.kind == ParticipantKind.AGENT
    )
    return int(tx.connection().execute(query).scalar() or 0)


def add_participant(
    tx: Tx,
    conv_id: uuid.UUID,
    kind: ParticipantKind,
    display_name: str,
    *,
    agent_id: uuid.UUID | None = None,
    user_id: str | None = None,
    now: datetime,
) -> Record:
    """A new participant; Conflict if the same one was added concurrently."""
    values = {
        "id": uuid.uuid4(),
        "conversation_id": conv_id,
        "kind": kind,
        "agent_id": agent_id,
        "user_id": user_id,
        "display_name": display_name,
        "joined_at": now,
    }
    try:
        return tx.connection().execute(insert(P).values(values).returning(P)).one()
    except IntegrityError:
        raise Conflict("that participant was added concurrently; read it again") from None


def participants(tx: Tx, conv_id: uuid.UUID) -> list[Record]:
    """The conversation's participants in joining order."""
    query = select(P).where(P.c.conversation_id == conv_id).order_by(P.c.joined_at)
    return list(tx.connection().execute(query))
