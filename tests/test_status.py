"""Live status: the batching broadcaster on a real Redis, and in-process event handlers."""

from __future__ import annotations

import json
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

import agentq
from agentq import events, status
from agentq.client import Client
from agentq.errors import InvalidInput
from agentq.events import Status
from agentq.runtime import bus
from agentq.runtime.redis import get_redis
from agentq.status import StatusBroadcaster
from agentq.store import outbox
from agentq.store.session import transaction
from tests.conftest import apply_env
from tests.helpers import wait_until


@pytest.fixture
def redis_env(base_env: dict[str, str]) -> dict[str, str]:
    apply_env(base_env)
    return base_env


class Subscriber:
    """Collects what is published on some conversations' channels."""

    def __init__(self, *conversation_ids: uuid.UUID) -> None:
        self.pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*(bus.channel(c) for c in conversation_ids))
        self.messages: list[dict[str, Any]] = []

    def items(self) -> list[dict[str, Any]]:
        return [item for m in self.messages for item in m["items"]]

    def collect(self, n_items: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.items()) < n_items and time.monotonic() < deadline:
            msg = self.pubsub.get_message(timeout=0.5)
            if msg:
                self.messages.append(json.loads(msg["data"]))
        return self.items()

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture
def subscriber_factory(redis_env: dict[str, str]) -> Iterator[Any]:
    made: list[Subscriber] = []

    def make(*ids: uuid.UUID) -> Subscriber:
        made.append(Subscriber(*ids))
        return made[-1]

    yield make
    for s in made:
        s.close()


def dropped_metric() -> float:
    return REGISTRY.get_sample_value("agentq_status_dropped_total") or 0.0


def test_burst_of_10000_updates_is_batched_bounded_and_drops_are_counted(
    subscriber_factory: Any,
) -> None:
    conv = uuid.uuid4()
    sub = subscriber_factory(conv)
    b = StatusBroadcaster()  # not started: the burst outruns the publisher entirely
    before = dropped_metric()

    def burst(start: int, stop: int) -> None:
        for i in range(start, stop):
            b.emit(
                Status(
                    conversation_id=conv,
                    category=("tool", "progress")[i % 2],
                    message=f"step {i}",
                    data={"i": i, "pad": "x" * 200},
                )
            )

    tracemalloc.start()
    empty = tracemalloc.get_traced_memory()[0]
    burst(0, 1000)
    full = tracemalloc.get_traced_memory()[0]
    burst(1000, 10_000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    assert len(b) == 1000 == b.max_buffer
    assert b.stats.emitted == 10_000 and b.stats.dropped == 9000
    assert dropped_metric() - before == 9000
    # 9000 more updates, and the memory held did not grow with them
    held = full - empty
    assert after - full < held / 4, (held, after - full)

    b.drain()
    items = sub.collect(1000)
    assert [it["payload"]["data"]["i"] for it in items if it["type"] == "status.tool"] == list(
        range(9000, 10_000, 2)
    )  # the newest survive, in order; the oldest were dropped
    assert len(items) == 1000
    assert b.stats.batches == 20
    for m in sub.messages:
        assert m["type"] == status.BATCH_TYPE and len(m["items"]) <= 25  # 50 split by category
        assert {it["payload"]["category"] for it in m["items"]} == {m["category"]}
        assert {it["conversation_id"] for it in m["items"]} == {str(conv)}


def test_background_publisher_groups_by_conversation_and_category(
    subscriber_factory: Any,
) -> None:
    a, b_ = uuid.uuid4(), uuid.uuid4()
    sub = subscriber_factory(a, b_)
    b = StatusBroadcaster(flush_interval=0.05).start()
    try:
        for i in range(120):
            b.emit(
                Status(
                    conversation_id=(a, b_)[i % 2],
                    category=("engine", "tool", "analysis")[i % 3],
                    data={"i": i},
                )
            )
        items = sub.collect(120)
    finally:
        b.stop()
    assert sorted(it["payload"]["data"]["i"] for it in items) == list(range(120))
    assert b.stats.dropped == 0
    for m in sub.messages:
        assert len(m["items"]) <= 50
        assert {(it["conversation_id"], it["payload"]["category"]) for it in m["items"]} == {
            (m["conversation_id"], m["category"])
        }


def test_a_few_updates_go_out_on_the_timer(subscriber_factory: Any) -> None:
    conv = uuid.uuid4()
    sub = subscriber_factory(conv)
    b = StatusBroadcaster(flush_interval=0.05).start()
    try:
        b.emit(Status(conversation_id=conv, category="info", message="hi"))
        assert len(sub.collect(1)) == 1  # far below a batch, published anyway
    finally:
        b.stop()


def test_emitters_check_their_input(redis_env: dict[str, str]) -> None:
    with pytest.raises(InvalidInput) as bad:
        status.emit(uuid.uuid4(), "gossip", "x")
    assert bad.value.field == "category"
    with pytest.raises(InvalidInput):
        StatusBroadcaster().emit(Status(category="info"))


def test_in_process_handlers_get_stored_and_live_events(db: str) -> None:
    got: list[dict[str, Any]] = []

    def failing(rec: dict[str, Any]) -> None:
        raise RuntimeError("a broken handler must not stop the others")

    handlers = [
        agentq.on("agent.responded")(failing),
        agentq.on("agent.responded")(got.append),
        agentq.on("message.created")(got.append),
        agentq.on("status.progress")(got.append),
    ]
    try:
        client = Client()
        conv = client.create_conversation("channel")
        user = client.add_participant(conv.id, user_id="u")
        posted = client.post_message(conv.id, user.id, "hello")
        # completion commits agent.responded in a worker; here we commit one ourselves
        with transaction() as tx:
            rows = outbox.insert_events(
                tx,
                [
                    events.AgentResponded(
                        conversation_id=conv.id,
                        agent_id=uuid.uuid4(),
                        job_id=uuid.uuid4(),
                        message_id=posted.id,
                        seq=2,
                    )
                ],
            )
        bus.publish(rows)
        status.progress(conv.id, "50%", done=1)
        wait_until(lambda: len(got) == 3, timeout=5, what="three handled events")
    finally:
        for name, fn in zip(
            ("agent.responded",) * 2 + ("message.created", "status.progress"), handlers, strict=True
        ):
            events._handlers[name].remove(fn)
    assert [r["type"] for r in got] == ["message.created", "agent.responded", "status.progress"]
    assert got[0]["payload"]["message_id"] == str(posted.id) and isinstance(got[0]["id"], int)
    assert got[1]["payload"]["seq"] == 2
    assert got[2]["id"] is None and got[2]["payload"]["data"] == {"done": 1}
