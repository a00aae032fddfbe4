"""The `jobs` and `message_jobs` tables: every change of a job's state, and nothing else.

Each statement is built once (building a Core statement costs about as much CPU as running
it) and named for what it does. Functions take the caller's transaction (`Tx`) and hold no
policy: which state comes next is the turn's decision (`agentq.turn`); this module only
writes it, fenced where a stale worker could otherwise write.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select, true, tuple_, update

from agentq.clock import utcnow
from agentq.events import Event
from agentq.states import (
    UNFINISHED_JOB_STATES,
    JobStatus,
    LinkStatus,
)
from agentq.store import messages, outbox, tables
from agentq.store.outbox import Recorded
from agentq.store.session import Record, Tx

J, L, A, C, M, CTX, E = (
    tables.jobs,
    tables.message_jobs,
    tables.agents,
    tables.conversations,
    tables.messages,
    tables.contexts,
    tables.events,
)

#: the open job of a conversation if there is one (at most one: a unique index), else the
#: oldest waiting; locked (the lock order is conversation, job, agent: see agentq.turn),
#: with its agent's status and limits, which a claim needs (the agent row is not locked:
#: claims of one agent must not queue on it; Redis holds its limits)
_NEXT = (
    select(
        J.c.id,
        J.c.status,
        J.c.agent_id,
        J.c.attempts,
        J.c.max_attempts,
        J.c.lease_until,
        J.c.next_attempt_at,
        J.c.created_at,
        A.c.status.label("agent_status"),
        A.c.name.label("agent_name"),
        A.c.max_concurrent_jobs,
        A.c.rate_limit_per_minute,
        A.c.tenant_id,
    )
    .join(A, A.c.id == J.c.agent_id)
    .where(J.c.conversation_id == bindparam("conv_id"), J.c.status.in_(UNFINISHED_JOB_STATES))
    .order_by(J.c.status == JobStatus.WAITING, J.c.created_at, J.c.id)
    .limit(1)
    .with_for_update(key_share=True, of=J)
)
#: where a job belongs: its conversation, agent and first trigger (read before locking
#: them in order)
_ROUTE = select(J.c.conversation_id, J.c.agent_id, J.c.trigger_message_id).where(
    J.c.id == bindparam("job_id")
)
#: claim a job: a new fencing token and a lease to be taken up in (not an attempt yet: see
#: `_START`); never a job whose current claim still holds its lease
_CLAIM = (
    update(J)
    .where(
        J.c.id == bindparam("job_id"),
        or_(J.c.status != JobStatus.ACTIVE, J.c.lease_until < bindparam("now")),
    )
    .values(
        status=JobStatus.ACTIVE,
        lease_token=J.c.lease_token + 1,
        lease_until=bindparam("lease_until"),
        lease_holder=None,  # until the new claim's worker takes it up
        next_attempt_at=None,
        started_at=func.coalesce(J.c.started_at, bindparam("now", type_=J.c.started_at.type)),
    )
    .returning(J.c.lease_token, J.c.attempts)
)
#: a job, its agent and its conversation, the seq of its last trigger, and the agent's
#: cached history of the conversation (`cache_*`, None if there is none): what an LLM call
#: needs
_FOR_CALL = (
    select(
        J.c.status,
        J.c.lease_token,
        J.c.conversation_id,
        J.c.result,
        J.c.trigger_message_id,
        A.c.id,
        A.c.name,
        A.c.role,
        A.c.backstory,
        A.c.goal,
        A.c.system_prompt,
        A.c.provider,
        A.c.model_config,
        C.c.settings,
        select(func.max(M.c.seq))
        .join(L, L.c.message_id == M.c.id)
        .where(L.c.job_id == J.c.id, L.c.status == LinkStatus.TRIGGER)
        .scalar_subquery()
        .label("last_trigger_seq"),
        CTX.c.id.label("cache_id"),
        CTX.c.last_seq.label("cache_last_seq"),
        CTX.c.messages.label("cache_messages"),
    )
    .join_from(J, A, A.c.id == J.c.agent_id)
    .join(C, C.c.id == J.c.conversation_id)
    .outerjoin(
        CTX, (CTX.c.agent_id == J.c.agent_id) & (CTX.c.conversation_id == J.c.conversation_id)
    )
    .where(J.c.id == bindparam("job_id"))
)
#: the same, and (PostgreSQL) the transaction's commit does not wait for the WAL flush:
#: `SET LOCAL synchronous_commit TO OFF` without a round trip of its own
_FOR_CALL_NOT_DURABLE = _FOR_CALL.add_columns(
    func.set_config("synchronous_commit", "off", True).label("not_durable")
)
#: keep the provider's answer while the claim is current
_STORE_ANSWER = (
    update(J)
    .where(
        J.c.id == bindparam("job_id"),
        J.c.status == JobStatus.ACTIVE,
        J.c.lease_token == bindparam("token"),
    )
    .values(result=bindparam("answer", type_=J.c.result.type))
)
#: the answer an earlier run stored, under the job's row lock
_STORED_ANSWER = (
    select(J.c.result)
    .where(J.c.id == bindparam("job_id"), J.c.status == JobStatus.ACTIVE)
    .with_for_update(key_share=True)
)


_OTHER = tables.jobs.alias("other_job")
#: what completing a job decides next: when its trigger was asked, whether a job of its
#: conversation waits, whether other conversations' jobs wait for its agent. Read after
#: the conversation's lock (with the completion on PostgreSQL, whose locking statement's
#: subqueries would see the snapshot from before its lock wait and miss a job made by the
#: lock's holder meanwhile)
_DONE_NEXT = (
    select(M.c.created_at)
    .where(M.c.id == J.c.trigger_message_id)
    .scalar_subquery()
    .label("asked_at"),
    exists()
    .where(_OTHER.c.conversation_id == J.c.conversation_id, _OTHER.c.status == JobStatus.WAITING)
    .label("waiting"),
    exists()
    .where(
        _OTHER.c.agent_id == J.c.agent_id,
        _OTHER.c.conversation_id != J.c.conversation_id,
        (_OTHER.c.status == JobStatus.WAITING)
        | ((_OTHER.c.status == JobStatus.DELAYED) & (_OTHER.c.next_attempt_at <= bindparam("now"))),
    )
    .label("others_wait"),
)
_DONE_COLUMNS = (
    J.c.conversation_id,
    J.c.agent_id,
    J.c.trigger_message_id,
    J.c.attempts,
    J.c.started_at,
)
#: SQLite's RETURNING does not read other rows as PostgreSQL's does: a read of its own
_DONE_NEXT_ALONE = select(*_DONE_NEXT).where(J.c.id == bindparam("job_id"))


def _complete_statement(*, fenced: bool, next_too: bool) -> Any:
    done = update(J).where(J.c.id == bindparam("job_id"), J.c.status == JobStatus.ACTIVE)
    if fenced:  # only the current claim may finish the job
        done = done.where(J.c.lease_token == bindparam("token"))
    return done.values(
        status=JobStatus.COMPLETED,
        result=bindparam("answer", type_=J.c.result.type),
        finished_at=bindparam("now"),
        lease_until=None,
        next_attempt_at=None,
    ).returning(*_DONE_COLUMNS, *(_DONE_NEXT if next_too else ()))


#: finish the job of the current claim with its answer (fenced) or with the answer stored
#: on it, and read what follows (PostgreSQL) or not (SQLite: `_DONE_NEXT_ALONE`)
_COMPLETE = {
    (fenced, pg): _complete_statement(fenced=fenced, next_too=pg)
    for fenced in (True, False)
    for pg in (True, False)
}
#: lock a job for a change of state
_LOCK = (
    select(
        J.c.id,
        J.c.conversation_id,
        J.c.agent_id,
        J.c.status,
        J.c.attempts,
        J.c.max_attempts,
        J.c.lease_token,
    )
    .where(J.c.id == bindparam("job_id"))
    .with_for_update(key_share=True)
)
#: a failed attempt: wait, holding no lease, until `next_attempt_at`
_DELAY = (
    update(J)
    .where(J.c.id == bindparam("job_id"))
    .values(
        status=JobStatus.DELAYED,
        next_attempt_at=bindparam("next_attempt_at"),
        lease_until=None,
        failure_reason=bindparam("reason"),
    )
)
#: end a job without a reply (failed or cancelled), with its reason
_END = (
    update(J)
    .where(J.c.id == bindparam("job_id"))
    .values(
        status=bindparam("status"),
        failure_reason=bindparam("reason"),
        finished_at=bindparam("now"),
        lease_until=None,
        next_attempt_at=None,
    )
)
#: a finished job runs again in its turn, with fresh attempts
_RETRY = (
    update(J)
    .where(J.c.id == bindparam("job_id"))
    .values(
        status=JobStatus.WAITING, attempts=0, failure_reason=None, finished_at=None, result=None
    )
)
_INSERT = insert(J)
_INSERT_LINK = insert(L)
#: the messages a job answers, in seq order
_TRIGGERS = (
    select(M.c.id, M.c.seq, M.c.author_id, M.c.role, M.c.content, M.c.deleted_at)
    .join(L, L.c.message_id == M.c.id)
    .where(L.c.job_id == bindparam("job_id"), L.c.status == LinkStatus.TRIGGER)
    .order_by(M.c.seq)
)
#: a conversation's jobs not finished yet, oldest first, locked
_UNFINISHED = (
    select(J.c.id, J.c.agent_id, J.c.status, J.c.lease_token)
    .where(J.c.conversation_id == bindparam("conv_id"), J.c.status.in_(UNFINISHED_JOB_STATES))
    .order_by(J.c.created_at)
    .with_for_update(key_share=True)
)
#: an agent's unfinished jobs (waiting, running, or delayed between attempts)
_OF_AGENT = select(J.c.id).where(
    J.c.agent_id == bindparam("agent_id"), J.c.status.in_(UNFINISHED_JOB_STATES)
)
_DROP_LINKS = delete(L).where(L.c.job_id == bindparam("job_id"))


class Next(NamedTuple):
    """A conversation's next job as `next_job` reads it, for a job just made (`create`):
    the caller knows it is next and has its agent's row."""

    id: uuid.UUID
    status: str
    agent_id: uuid.UUID
    attempts: int
    max_attempts: int
    lease_until: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    agent_status: str
    agent_name: str
    max_concurrent_jobs: int
    rate_limit_per_minute: int
    tenant_id: uuid.UUID


def next_job(tx: Tx, conv_id: uuid.UUID) -> Record | None:
    """The conversation's job to run or watch next (open first, else oldest waiting),
    locked, with its agent's `agent_status`, `agent_name`, `max_concurrent_jobs`,
    `rate_limit_per_minute` and `tenant_id` (not locked)."""
    return tx.connection().execute(_NEXT, {"conv_id": conv_id}).first()


def route(tx: Tx, job_id: uuid.UUID) -> Record | None:
    """(conversation_id, agent_id, trigger_message_id) of the job, not locked."""
    return tx.connection().execute(_ROUTE, {"job_id": job_id}).first()


#: a claim's worker takes it up: one more attempt, the lease of a running call, and who
#: holds it
_START = (
    update(J)
    .where(
        J.c.id == bindparam("job_id"),
        J.c.status == JobStatus.ACTIVE,
        J.c.lease_token == bindparam("token"),
        J.c.started_token != bindparam("token"),
    )
    .values(
        attempts=J.c.attempts + 1,
        started_token=bindparam("token"),
        lease_until=bindparam("lease_until"),
        lease_holder=bindparam("holder"),
    )
    .returning(J.c.attempts)
)


#: claim a job and store the event that tells of it, in one statement (PostgreSQL): the
#: event is stored only if the claim is made
_CLAIMED = _CLAIM.values(updated_at=bindparam("updated_at")).cte("claimed")
_TOLD = (
    insert(E)
    .from_select(
        list(outbox.ROW_COLUMNS),
        select(*(bindparam(f"ev_{c}", type_=E.c[c].type) for c in outbox.ROW_COLUMNS)).select_from(
            _CLAIMED
        ),
    )
    .returning(E.c.id)
    .cte("told")
)
_CLAIM_TOLD = select(
    _CLAIMED.c.lease_token, _CLAIMED.c.attempts, _TOLD.c.id.label("event_id")
).select_from(_CLAIMED.outerjoin(_TOLD, true()))


def claim(
    tx: Tx, job_id: uuid.UUID, now: datetime, lease_until: datetime, told: Event | None = None
) -> tuple[Record, list[Recorded]] | None:
    """Claim the job: (lease_token, attempts so far) of the new claim, and `told`, the
    event telling of it, stored (one statement on PostgreSQL); None if its current claim
    still holds its lease (renewed since the caller read it): nothing is stored then."""
    params: dict[str, Any] = {"job_id": job_id, "now": now, "lease_until": lease_until}
    conn = tx.connection()
    if told is None:
        claimed = conn.execute(_CLAIM, params).first()
        return None if claimed is None else (claimed, [])
    if conn.dialect.name != "postgresql":
        claimed = conn.execute(_CLAIM, params).first()
        return None if claimed is None else (claimed, outbox.insert_events(tx, [told]))
    (row,) = outbox.rows([told], now)
    params.update({f"ev_{k}": v for k, v in row.items()})
    params["updated_at"] = (
        now  # its row's updated_at (the onupdate default is not applied in a CTE)
    )
    claimed = conn.execute(_CLAIM_TOLD, params).first()
    if claimed is None:
        return None
    return claimed, outbox.recorded([claimed.event_id], [row])


def start(
    tx: Tx, job_id: uuid.UUID, token: int, lease_until: datetime, holder: str | None
) -> int | None:
    """The worker of claim `token` starts its call: the attempt's number; None if the claim
    is stale or was started already (a redelivered task). `holder` names the worker
    process (`lease_holder`: "hostname/pid")."""
    params = {"job_id": job_id, "token": token, "lease_until": lease_until, "holder": holder}
    attempt: int | None = tx.connection().execute(_START, params).scalar()
    return attempt


#: `_START`, and in the same statement the history a prompt reads (`messages.HISTORY`),
#: newest first; no row if the claim cannot start, one of NULL history if it has none
_STARTED = _START.values(updated_at=bindparam("updated_at")).cte("started")
_HISTORY_ROWS = messages.HISTORY.subquery("h")
_START_READING = (
    select(_STARTED.c.attempts, *_HISTORY_ROWS.c)
    .select_from(_STARTED.outerjoin(_HISTORY_ROWS, true()))
    .order_by(_HISTORY_ROWS.c.seq.desc())
)


def start_reading(
    tx: Tx,
    job_id: uuid.UUID,
    token: int,
    lease_until: datetime,
    holder: str | None,
    history: tuple[uuid.UUID, int, int, int],
) -> tuple[int, list[Record]] | None:
    """`start`, and the conversation's history as `messages.history(tx, *history)` reads
    it (conversation, after, upto, limit), in one statement on PostgreSQL: (the attempt's
    number, the history's rows), or None if the claim cannot start (nothing is read)."""
    conn = tx.connection()
    if conn.dialect.name != "postgresql":
        attempt = start(tx, job_id, token, lease_until, holder)
        return None if attempt is None else (attempt, messages.history(tx, *history))
    conv_id, after, upto, limit = history
    params = {
        "job_id": job_id,
        "token": token,
        "lease_until": lease_until,
        "holder": holder,
        # its row's updated_at (the onupdate default is not applied in a CTE)
        "updated_at": utcnow(),
        "conv_id": conv_id,
        "after": after,
        "upto": upto,
        "limit": limit,
    }
    rows = conn.execute(_START_READING, params).all()
    if not rows:
        return None
    return rows[0].attempts, [r for r in rows if r.seq is not None]


def renew(
    tx: Tx, claims: Sequence[tuple[uuid.UUID, int]], lease_until: datetime
) -> set[tuple[uuid.UUID, int]]:
    """Extend the leases of the claims (job, token) still current; the claims renewed. A
    claim left out was finished, cancelled or taken over: its worker must stop."""
    if not claims:
        return set()
    renewed = (
        update(J)
        .where(tuple_(J.c.id, J.c.lease_token).in_(claims), J.c.status == JobStatus.ACTIVE)
        .values(lease_until=lease_until)
        .returning(J.c.id, J.c.lease_token)
    )
    return {(row.id, row.lease_token) for row in tx.connection().execute(renewed)}


def for_call(tx: Tx, job_id: uuid.UUID, *, durable: bool = True) -> Record | None:
    """The job with its agent's profile, its conversation's settings and the agent's cached
    history (`cache_id`, `cache_last_seq`, `cache_messages`). Not `durable`: the caller's
    transaction is made non-durable too, as `transaction(durable=False)` would (on
    PostgreSQL; call it first, before any write), in the same round trip."""
    conn = tx.connection()
    statement = _FOR_CALL if durable or conn.dialect.name != "postgresql" else _FOR_CALL_NOT_DURABLE
    return conn.execute(statement, {"job_id": job_id}).first()


def store_answer(tx: Tx, job_id: uuid.UUID, token: int, answer: dict[str, Any]) -> bool:
    """Keep `answer` on the job if claim `token` is current; whether it was kept."""
    done = tx.connection().execute(
        _STORE_ANSWER, {"job_id": job_id, "token": token, "answer": answer}
    )
    return bool(done.rowcount == 1)


def stored_answer(tx: Tx, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The answer stored on an active job, locking it; None if there is none."""
    answer: dict[str, Any] | None = (
        tx.connection().execute(_STORED_ANSWER, {"job_id": job_id}).scalar()
    )
    return answer


class Done(NamedTuple):
    """A completed job, and what follows its completion (see `_DONE_NEXT`)."""

    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    trigger_message_id: uuid.UUID | None
    attempts: int
    started_at: datetime | None
    asked_at: datetime | None
    waiting: bool
    others_wait: bool


def complete(
    tx: Tx, job_id: uuid.UUID, answer: dict[str, Any], now: datetime, token: int | None
) -> Record | Done | None:
    """Mark the job completed with `answer` (fenced by `token` unless None: the answer was
    stored by the claim that made it). None if it was not active (or the claim is stale)."""
    conn = tx.connection()
    pg = conn.dialect.name == "postgresql"
    params = {"job_id": job_id, "answer": answer, "now": now}
    if token is not None:
        params["token"] = token
    done = conn.execute(_COMPLETE[(token is not None, pg)], params).first()
    if done is None or pg:
        return done
    follows = conn.execute(_DONE_NEXT_ALONE, {"job_id": job_id, "now": now}).one()
    return Done(*done, *follows)


def lock(tx: Tx, job_id: uuid.UUID) -> Record | None:
    """The job, locked for a change of state."""
    return tx.connection().execute(_LOCK, {"job_id": job_id}).first()


def delay(tx: Tx, job_id: uuid.UUID, until: datetime, reason: str) -> None:
    """An attempt failed: the job waits until `until` without a lease."""
    tx.connection().execute(_DELAY, {"job_id": job_id, "next_attempt_at": until, "reason": reason})


def end(tx: Tx, job_id: uuid.UUID, status: JobStatus, reason: str, now: datetime) -> None:
    """End the job without a reply: `failed` or `cancelled`, with `reason`."""
    tx.connection().execute(
        _END, {"job_id": job_id, "status": status, "reason": reason, "now": now}
    )


def retry(tx: Tx, job_id: uuid.UUID) -> None:
    """Make a finished job wait for its turn again, with fresh attempts."""
    tx.connection().execute(_RETRY, {"job_id": job_id})


#: the columns of a new job's row (`create`)
_NEW_COLUMNS = (
    "id",
    "conversation_id",
    "agent_id",
    "trigger_message_id",
    "status",
    "max_attempts",
    "attempts",
    "priority",
    "lease_token",
    "started_token",
    "created_at",
    "updated_at",
)
#: a new job with its `n` trigger links, in one statement (PostgreSQL), by `n`
_CREATE: dict[int, Any] = {}


def _create_statement(n: int) -> Any:
    job = insert(J).values({c: bindparam(f"j_{c}", type_=J.c[c].type) for c in _NEW_COLUMNS})
    rows = tables.rows_of(L, LINK_ROW_COLUMNS, [f"k{i}_" for i in range(n)])
    links = insert(L).from_select(LINK_ROW_COLUMNS, rows)
    # The links' foreign key to the job is checked at the statement's end: it is there.
    return links.add_cte(job.cte("job"))


def create(
    tx: Tx,
    conv_id: uuid.UUID,
    agent_id: uuid.UUID,
    trigger_ids: Sequence[uuid.UUID],
    max_attempts: int,
    now: datetime,
) -> uuid.UUID:
    """A waiting job of `agent_id` answering `trigger_ids`, with its `message_jobs` links
    (one statement on PostgreSQL)."""
    job_id = uuid.uuid4()
    conn = tx.connection()
    job = {
        "id": job_id,
        "conversation_id": conv_id,
        "agent_id": agent_id,
        "trigger_message_id": trigger_ids[0],
        "status": JobStatus.WAITING,
        "max_attempts": max_attempts,
        "attempts": 0,
        "priority": 0,
        "lease_token": 0,
        "started_token": 0,
        "created_at": now,
        "updated_at": now,
    }
    links = [link_row(m, job_id, agent_id, conv_id, LinkStatus.TRIGGER, now) for m in trigger_ids]
    if conn.dialect.name != "postgresql":
        conn.execute(_INSERT, job)
        conn.execute(_INSERT_LINK, links)
        return job_id
    n = len(links)
    statement = _CREATE.get(n)
    if statement is None:
        statement = _CREATE[n] = _create_statement(n)
    params = {f"j_{c}": v for c, v in job.items()}
    for i, link in enumerate(links):
        params.update({f"k{i}_{c}": v for c, v in link.items()})
    conn.execute(statement, params)
    return job_id


#: the columns of a `message_jobs` row (`link_row`)
LINK_ROW_COLUMNS = (
    "id",
    "message_id",
    "job_id",
    "agent_id",
    "conversation_id",
    "status",
    "created_at",
)


def link_row(
    message_id: uuid.UUID,
    job_id: uuid.UUID,
    agent_id: uuid.UUID,
    conv_id: uuid.UUID,
    status: LinkStatus,
    now: datetime,
) -> dict[str, Any]:
    """A `message_jobs` row (`LINK_ROW_COLUMNS`)."""
    return {
        "id": uuid.uuid4(),
        "message_id": message_id,
        "job_id": job_id,
        "agent_id": agent_id,
        "conversation_id": conv_id,
        "status": status,
        "created_at": now,
    }


def link_reply(
    tx: Tx,
    message_id: uuid.UUID,
    job_id: uuid.UUID,
    agent_id: uuid.UUID,
    conv_id: uuid.UUID,
    now: datetime,
) -> None:
    """The `message_jobs` row of a job's reply."""
    row = link_row(message_id, job_id, agent_id, conv_id, LinkStatus.REPLY, now)
    tx.connection().execute(_INSERT_LINK, row)


#: the newest other job answering one of the job's messages (they were carried into it)
_OTHER = J.alias("other_job")
_CARRIED_INTO = (
    select(_OTHER.c.id)
    .join(L, L.c.job_id == _OTHER.c.id)
    .where(
        L.c.status == LinkStatus.TRIGGER,
        _OTHER.c.id != bindparam("job_id"),
        L.c.message_id.in_(
            select(L.c.message_id).where(
                L.c.job_id == bindparam("job_id"), L.c.status == LinkStatus.TRIGGER
            )
        ),
    )
    .order_by(_OTHER.c.created_at.desc())
    .limit(1)
)


def carried_into(tx: Tx, job_id: uuid.UUID) -> uuid.UUID | None:
    """The newest other job that answers one of this job's messages (an interrupt carried
    them into it), if any."""
    other: uuid.UUID | None = tx.connection().execute(_CARRIED_INTO, {"job_id": job_id}).scalar()
    return other


def triggers(tx: Tx, job_id: uuid.UUID) -> list[Record]:
    """The messages the job answers, in seq order."""
    return list(tx.connection().execute(_TRIGGERS, {"job_id": job_id}))


def drop_links(tx: Tx, job_id: uuid.UUID) -> None:
    """Forget which messages the job answered (a rollback leaves no trace of it)."""
    tx.connection().execute(_DROP_LINKS, {"job_id": job_id})


def unfinished(tx: Tx, conv_id: uuid.UUID) -> list[Record]:
    """The conversation's unfinished jobs (id, agent_id, status, lease_token), oldest
    first, locked."""
    return list(tx.connection().execute(_UNFINISHED, {"conv_id": conv_id}))


def unfinished_of_agent(tx: Tx, agent_id: uuid.UUID) -> list[uuid.UUID]:
    """The agent's jobs not finished yet (each is locked by the step that changes it)."""
    return list(tx.connection().execute(_OF_AGENT, {"agent_id": agent_id}).scalars())


# -- operator reads --------------------------------------------------------------------------

#: a job with its trigger seqs and its reply's id
_TRIGGER_SEQS = (
    select(M.c.seq)
    .join(L, L.c.message_id == M.c.id)
    .where(L.c.job_id == bindparam("job_id"), L.c.status == LinkStatus.TRIGGER)
    .order_by(M.c.seq)
)


def get(tx: Tx, job_id: uuid.UUID) -> Record | None:
    """Every column of the job."""
    return tx.connection().execute(select(J).where(J.c.id == job_id)).first()


def trigger_seqs(tx: Tx, job_id: uuid.UUID) -> list[int]:
    """The seqs of the messages the job answers."""
    return list(tx.connection().execute(_TRIGGER_SEQS, {"job_id": job_id}).scalars())


def of_message(tx: Tx, message_id: uuid.UUID) -> list[uuid.UUID]:
    """The jobs that answer a message."""
    query = select(L.c.job_id).where(L.c.message_id == message_id, L.c.status == LinkStatus.TRIGGER)
    return list(tx.connection().execute(query).scalars())


# -- held by a circuit breaker ---------------------------------------------------------------


def _hold_statement(*, started: bool) -> Any:
    held = update(J).where(
        J.c.id == bindparam("job_id"),
        J.c.status == JobStatus.ACTIVE,
        J.c.lease_token == bindparam("token"),
    )
    if started:  # its call ran and failed as the circuit opened: that attempt is given back
        held = held.where(J.c.started_token == bindparam("token")).values(attempts=J.c.attempts - 1)
    else:  # never a claim whose call runs already (a redelivered task)
        held = held.where(J.c.started_token != bindparam("token"))
    return held.values(
        status=JobStatus.DELAYED,
        next_attempt_at=bindparam("next_attempt_at"),
        lease_until=None,
        failure_reason=bindparam("reason"),
    ).returning(J.c.conversation_id, J.c.agent_id, J.c.attempts)


#: a claim held back before its call: delayed without counting an attempt
_HOLD = _hold_statement(started=False)
#: a claim whose call failed as the circuit opened: delayed, its attempt given back
_HOLD_STARTED = _hold_statement(started=True)
#: held jobs due at once (the circuit closed)
_MAKE_DUE = (
    update(J)
    .where(
        J.c.id.in_(bindparam("job_ids", expanding=True)),
        J.c.status == JobStatus.DELAYED,
        J.c.next_attempt_at > bindparam("now"),
    )
    .values(next_attempt_at=bindparam("now"))
    .returning(J.c.conversation_id)
)


def hold(
    tx: Tx,
    job_id: uuid.UUID,
    token: int,
    until: datetime,
    reason: str,
    *,
    started: bool,
) -> Record | None:
    """Delay the job of claim `token` until `until` without counting an attempt: one its
    call `started` is given back. (conversation_id, agent_id, attempts), or None if the
    claim is stale (or, not `started`, its call runs already)."""
    statement = _HOLD_STARTED if started else _HOLD
    params = {"job_id": job_id, "token": token, "next_attempt_at": until, "reason": reason}
    return tx.connection().execute(statement, params).first()


def make_due(tx: Tx, job_ids: Sequence[uuid.UUID], now: datetime) -> list[uuid.UUID]:
    """Make those of the delayed jobs still waiting due `now`; their conversations."""
    if not job_ids:
        return []
    params = {"job_ids": list(job_ids), "now": now}
    return list(tx.connection().execute(_MAKE_DUE, params).scalars())
