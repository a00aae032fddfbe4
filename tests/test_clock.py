"""Leases and due times are on the database's clock, not each host's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from agentq import clock, turn
from agentq.client import Client
from agentq.store.session import get_engine, reader
from agentq.turn.schedule import pickup_seconds
from tests.helpers import jobs_of, make_dm

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


@pytest.fixture
def pg_only(db: str) -> Iterator[str]:
    if not db.startswith("postgresql"):
        pytest.skip("SQLite runs on this host: its clock is the host's")
    yield db


def test_the_offset_to_the_database_clock_is_measured(pg_only: str) -> None:
    get_engine()  # a PostgreSQL engine makes the clock follow its server
    # Same machine here: the measured offset is about nothing.
    assert abs(clock.offset().total_seconds()) < 0.5


def test_a_claims_lease_is_set_on_the_database_clock_when_this_host_runs_late(
    pg_only: str,
) -> None:
    get_engine()
    real_offset = clock.offset()
    # As if this host's clock ran 30 s behind the database's (a measurement saying so: the
    # two clocks are the same here).
    clock.follow(lambda: real_offset + timedelta(seconds=30))
    try:
        client = Client()
        conv, user, _ = make_dm(client, settings=NOW)
        client.post_message(conv.id, user.id, "hello")
        turn.dispatch_due(conv.id)
        claim = turn.advance(conv.id)
        assert claim is not None
        (job,) = jobs_of(conv.id)
        with reader() as s:
            db_now = s.execute(text("SELECT clock_timestamp()")).scalar_one()
        # The lease runs from the database's now, 30 s past this host's: on a host that
        # really ran behind it would otherwise have expired 30 s early.
        left = (job.lease_until - db_now).total_seconds()
        assert pickup_seconds() + 25 < left < pickup_seconds() + 35
    finally:
        clock.follow(lambda: real_offset)
