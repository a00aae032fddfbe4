"""Engines and sessions: one engine a process, created lazily and renewed after fork."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Row, create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from agentq import clock
from agentq.config import get_settings

#: THE LOCK ORDER. A transaction that locks rows of several tables locks them in this
#: order, and so never waits in a cycle with another (a PostgreSQL deadlock): the
#: conversation first (it makes a conversation's steps take turns), then its jobs, then
#: the agents. A step that starts from a job reads where the job belongs without a lock
#: (`jobs.route`), then locks in order. Agent rows are locked last and briefly (a status,
#: a counter); a claim does not lock its agent at all.
LOCK_ORDER = ("conversations", "jobs", "agents")

#: how agentq locks a row it will update: FOR NO KEY UPDATE on PostgreSQL, which does not
#: conflict with the KEY SHARE locks that inserting rows referring to it take (a job's
#: foreign key to its agent). With plain FOR UPDATE, two transactions that each insert a
#: job and then lock the job's agent deadlock. SQLite locks the whole database instead.
ROW_LOCK = {"key_share": True}

#: a database error (a deadlock victim, a failover, a restart): worth retrying
DatabaseError = DBAPIError

#: a constraint the database enforced (a unique one, mostly): a concurrent write won a
#: race that the store did not turn into `agentq.errors.Conflict` itself
ConstraintError = IntegrityError

#: a row a named statement returns (any number of columns, read by name)
Record = Row[*tuple[Any, ...]]

#: what a step of a turn works in: one transaction, opened by `transaction()`
Tx = Session

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engines: dict[tuple[str, int], tuple[Engine, sessionmaker[Session]]] = {}


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        hide_parameters=True,  # see make_engine
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the one writer
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock up front: two processes that both read and then write would
        # otherwise deadlock on the lock upgrade, and one of them would fail.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


#: replace pooled connections this old, before a server or proxy idle timeout drops them
POOL_RECYCLE_SECONDS = 1800


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # No pre-ping: it costs a round trip on every checkout (a tenth of a worker's time in
    # the benchmark). A connection that died with its server fails one statement instead;
    # SQLAlchemy then drops the whole pool, and tasks retry on DBAPIError.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=40,
        pool_recycle=POOL_RECYCLE_SECONDS,
        # Statement parameters (message bodies, replies) stay out of errors, and so out
        # of every traceback and log line.
        hide_parameters=True,
    )


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url` (default: the configured database) in this process."""
    return _get(url)[0]


def _get(url: str | None) -> tuple[Engine, sessionmaker[Session]]:
    url = url or get_settings().database_url
    key = (url, os.getpid())  # a forked child must not share its parent's connections
    pair = _engines.get(key)
    if pair is None:
        with _lock:
            pair = _engines.get(key)
            if pair is None:
                engine = make_engine(url)
                pair = _engines[key] = (engine, sessionmaker(engine, expire_on_commit=False))
                if engine.dialect.name == "postgresql":
                    clock.follow(lambda: _clock_offset(engine))
    return pair


def _clock_offset(engine: Engine) -> timedelta | None:
    """The database's clock minus this host's, read halfway through one round trip (SQLite
    runs on this host: its clock is ours)."""
    try:
        with engine.connect() as conn:
            before = datetime.now(UTC)
            db_now = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
            after = datetime.now(UTC)
    except Exception as exc:  # noqa: BLE001 - keep the offset we have; try again later
        log.warning("database clock not read: %s", type(exc).__name__)
        return None
    offset: timedelta = db_now - (before + (after - before) / 2)
    return offset


def dispose_engines() -> None:
    """Drop every pooled connection (after fork, or at shutdown)."""
    with _lock:
        for engine, _ in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


@contextmanager
def transaction(url: str | None = None, *, durable: bool = True) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    `durable=False` is for writes a database crash may lose without harm, because
    something rebuilds them (an event's `published_at` mark, a context cache): on
    PostgreSQL the commit then does not wait for the WAL flush (synchronous_commit off
    for this transaction only; it still commits atomically and in order).
    """
    with _get(url)[1].begin() as session:
        if not durable and session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        yield session


@contextmanager
def reader(url: str | None = None) -> Iterator[Session]:
    """A session for reads only."""
    with _get(url)[1]() as session:
        yield session
