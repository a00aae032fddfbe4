"""Reads of the stored event feed (the `events` table) in commit order, from any cursor.

Event ids come from a sequence at INSERT but become visible at COMMIT, so a reader
paging by `id > after` skipped every event whose transaction committed after a higher
id had been read. Here the feed is read in an order no later commit can land behind:

- PostgreSQL: each event records the id of the transaction that wrote it (`txid`,
  migration 0004), and the feed reads `(txid, id)` in order, only below the xmin of the
  reading statement's snapshot. Every transaction below xmin has finished, so nothing
  can appear later at or below a cursor handed out; events of a transaction still open
  (and of those that began after it) are held back until it ends.
- SQLite: one writer at a time, so id order is commit order; txid is 0.

Cursors are opaque strings, the urlsafe base64 of "txid.id" ("0" is the start), checked
strictly: anything else is an InvalidInput naming the field it came in. The SSE streams
replay through here on every (re)connect, so each read is one Core statement built once.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Text,
    and_,
    cast,
    column,
    func,
    or_,
    select,
    table,
)
from sqlalchemy import bindparam as param
from sqlalchemy import tuple_ as row

from agentq.errors import InvalidInput
from agentq.store import tables
from agentq.store.session import reader

#: the longest cursor: base64 of two 19-digit numbers and a dot
MAX_CURSOR_LENGTH = 52
_MAX_INT = 2**63 - 1
_BASE64 = re.compile(r"[A-Za-z0-9_-]{2,52}")
_POSITION = re.compile(r"(0|[1-9][0-9]{0,18})\.([1-9][0-9]{0,18})")


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader is in the feed: after the event `id` of transaction `txid`."""

    txid: int
    id: int


#: before the first event
START = Position(0, 0)


def encode_cursor(position: Position) -> str:
    """The opaque cursor of `position`."""
    if position == START:
        return "0"
    text = f"{position.txid}.{position.id}".encode("ascii")
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_cursor(raw: str | int | None, field: str = "after") -> Position:
    """The position of a cursor handed out by this feed; None, 0 and "0" are the start.

    Strict: only the exact strings `encode_cursor` makes are accepted, anything else is
    an InvalidInput naming `field`."""
    if (
        raw is None
        or raw == "0"
        or (isinstance(raw, int) and not isinstance(raw, bool) and raw == 0)
    ):
        return START
    bad = InvalidInput(field, "must be a cursor this feed handed out ('0' for the start)")
    if not isinstance(raw, str) or not _BASE64.fullmatch(raw):
        raise bad
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    match = _POSITION.fullmatch(text)
    if match is None:
        raise bad
    position = Position(int(match[1]), int(match[2]))
    if max(position.txid, position.id) > _MAX_INT or encode_cursor(position) != raw:
        raise bad
    return position


@dataclass(frozen=True)
class FeedEvent:
    """One stored event, as the feed hands it out."""

    id: int
    txid: int
    type: str
    conversation_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime

    @property
    def position(self) -> Position:
        return Position(self.txid, self.id)

    @property
    def cursor(self) -> str:
        """The cursor to continue after this event."""
        return encode_cursor(self.position)


_E, _C = tables.events, tables.conversations
_COLUMNS = (_E.c.id, _E.c.txid, _E.c.type, _E.c.conversation_id, _E.c.payload, _E.c.created_at)
#: every transaction below it has finished (PostgreSQL 13+; xid8 never wraps)
_XMIN = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
#: events after the cursor (:txid, :id) that no later commit can land behind
_AFTER: dict[str, ColumnElement[bool]] = {
    "postgresql": and_(
        _E.c.txid < _XMIN, row(_E.c.txid, _E.c.id) > row(param("txid"), param("id"))
    ),
    "sqlite": _E.c.id > param("id"),
}
_ORDER = {"postgresql": (_E.c.txid, _E.c.id), "sqlite": (_E.c.id,)}
_OF_CONVERSATION = _E.c.conversation_id == param("conv_id")
#: the tenant's conversations or no conversation (agent events, which the caller filters)
_OF_TENANT = or_(_C.c.tenant_id == param("tenant_id"), _E.c.conversation_id.is_(None))


def _statements(dialect: str) -> dict[str, Select[Any]]:
    after, order = _AFTER[dialect], _ORDER[dialect]
    page = select(*_COLUMNS).order_by(*order).limit(param("limit"))
    done = _XMIN if dialect == "postgresql" else None
    tail = select(_E.c.txid, _E.c.id).where(_OF_CONVERSATION)
    if done is not None:
        tail = tail.where(_E.c.txid < done)
    return {
        "all": page.where(after),
        "conversation": page.where(after, _OF_CONVERSATION),
        "tenant": page.outerjoin(_C, _C.c.id == _E.c.conversation_id).where(after, _OF_TENANT),
        "tail": tail.order_by(*(c.desc() for c in order)).limit(1),
    }


# Statements built once, for each backend.
_STATEMENTS = {dialect: _statements(dialect) for dialect in _AFTER}


def _dialect(session: Any) -> str:
    name = str(session.get_bind().dialect.name)
    return name if name in _STATEMENTS else "postgresql"


def _events(kind: str, after: str | int | None, field: str, **params: Any) -> list[FeedEvent]:
    position = decode_cursor(after, field)
    with reader() as session:
        statement = _STATEMENTS[_dialect(session)][kind]
        rows = session.connection().execute(
            statement, {"txid": position.txid, "id": position.id, **params}
        )
        return [FeedEvent(*r) for r in rows]


def read_feed(
    after: str | int | None = None,
    limit: int = 100,
    conversation_id: uuid.UUID | None = None,
    *,
    field: str = "after",
) -> list[FeedEvent]:
    """Stored events after the cursor `after` (of one conversation if given), in commit
    order. A malformed cursor is an InvalidInput naming `field`."""
    if conversation_id is None:
        return _events("all", after, field, limit=limit)
    return _events("conversation", after, field, limit=limit, conv_id=conversation_id)


def tenant_feed(
    tenant_id: uuid.UUID, after: str | int | None = None, limit: int = 100
) -> list[FeedEvent]:
    """Stored events after the cursor `after` of the tenant's conversations or of no
    conversation, in commit order."""
    return _events("tenant", after, "after", limit=limit, tenant_id=tenant_id)


def tail(conversation_id: uuid.UUID) -> str:
    """The cursor after the conversation's last event that the feed hands out now."""
    with reader() as session:
        statement = _STATEMENTS[_dialect(session)]["tail"]
        last = session.connection().execute(statement, {"conv_id": conversation_id}).first()
    return encode_cursor(Position(last.txid, last.id)) if last else "0"


def check_cursor(raw: str | int | None, field: str) -> str:
    """`raw` as a canonical cursor, or an InvalidInput naming `field`."""
    return encode_cursor(decode_cursor(raw, field))


# The feed's lag (PostgreSQL): events committed at or above xmin wait for an older
# transaction, anywhere on the server (transaction ids are the server's), to end.
#: when the first event the feed holds back was written (None: it holds none back)
_HELD_SINCE = (
    select(_E.c.created_at)
    .where(_E.c.txid >= _XMIN)
    .order_by(_E.c.txid, _E.c.id)
    .limit(1)
    .scalar_subquery()
)
_ACTIVITY = table("pg_stat_activity", column("xact_start"), column("backend_xid"))
#: when the oldest open transaction holding a transaction id began (it holds xmin back;
#: other roles' sessions show only with pg_read_all_stats)
_WRITER_SINCE = (
    select(func.min(_ACTIVITY.c.xact_start))
    .where(_ACTIVITY.c.backend_xid.is_not(None))
    .scalar_subquery()
)
_LAG = select(_HELD_SINCE.label("held_since"), _WRITER_SINCE.label("writer_since"))


@dataclass(frozen=True)
class Lag:
    """What holds the feed back, as of one read."""

    #: when the oldest committed event not handed out yet was written (None: none waits)
    held_since: datetime | None
    #: when the oldest open transaction with a transaction id began (None: none open)
    writer_since: datetime | None


def lag() -> Lag | None:
    """The feed's lag on PostgreSQL (None on SQLite, where commits are in id order)."""
    with reader() as session:
        if _dialect(session) != "postgresql":
            return None
        row = session.connection().execute(_LAG).one()
    return Lag(row.held_since, row.writer_since)
