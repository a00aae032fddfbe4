"""Feed lag is visible (issue 15): on PostgreSQL the feed hands out an event only once
every older transaction has ended, so one long transaction holds the feed back; the API's
scrape shows it as `agentq_feed_lag_seconds` (how long the oldest committed event has
waited) and `agentq_feed_oldest_transaction_seconds` (how old the holder is)."""

from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client import generate_latest

from agentq.events import MessageCreated
from agentq.runtime import bus, metrics
from agentq.store import outbox
from agentq.store.session import transaction
from tests.conftest import apply_env
from tests.helpers import wait_until

LAG, HOLDER = "agentq_feed_lag_seconds", "agentq_feed_oldest_transaction_seconds"


def gauges() -> dict[str, float]:
    return {m.name: m.samples[0].value for m in metrics.FeedLagCollector().collect()}


def event(conv: uuid.UUID, seq: int) -> MessageCreated:
    return MessageCreated(conversation_id=conv, message_id=uuid.uuid4(), seq=seq, role="user")


@pytest.fixture
def pg(pg_url: str, base_env: dict[str, str], restored_env: None) -> str:
    apply_env({**base_env, "AGENTQ_DATABASE_URL": pg_url})
    return pg_url


def test_a_long_transaction_shows_as_feed_lag_until_it_ends(pg: str) -> None:
    conv = uuid.uuid4()
    start = bus.feed_tail(conv)
    with transaction(pg) as slow:
        outbox.insert_events(slow, [event(conv, 1)])  # holds a transaction id from here
        with transaction(pg) as fast:
            outbox.insert_events(fast, [event(conv, 2)])  # committed, but held back
        first = wait_until(lambda: (g := gauges())[LAG] > 0 and g, what="the lag to show")
        time.sleep(1.0)
        later = gauges()
        assert bus.read_feed(after=start, conversation_id=conv) == []
        # it rises while the holder stays open
        assert later[LAG] >= 1.0 and later[LAG] > first[LAG]
        assert later[HOLDER] >= 1.0
        assert LAG in generate_latest(metrics.state_registry()).decode()
    # once every older transaction on the server has ended (other tests' too)
    wait_until(lambda: gauges()[LAG] == 0, what="the lag to clear")
    assert [r["payload"]["seq"] for r in bus.read_feed(after=start, conversation_id=conv)] == [1, 2]


def test_sqlite_has_no_feed_lag(
    sqlite_url: str, base_env: dict[str, str], restored_env: None
) -> None:
    apply_env({**base_env, "AGENTQ_DATABASE_URL": sqlite_url})
    assert gauges() == {}
