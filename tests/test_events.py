"""Events: the stored feed, and in-process handlers fed from every process."""

from __future__ import annotations

import threading

import pytest

import agentq
from agentq import events
from agentq.errors import InvalidInput
from agentq.runtime import bus
from tests.conftest import Live
from tests.helpers import make_dm, wait_until


@pytest.mark.integration
def test_handlers_see_replies_committed_by_workers_once_listening(live: Live) -> None:
    seen: list[dict] = []
    lock = threading.Lock()

    @agentq.on("agent.responded")
    def record(event: dict) -> None:
        with lock:
            seen.append(event)

    listener = bus.listen()
    try:
        conv, user, _ = make_dm(
            live.client, settings={"debounce_seconds": 0, "max_wait_seconds": 0}
        )
        reply = live.client.ask(conv.id, user.id, "hello", timeout=30)
        mine = wait_until(
            lambda: [e for e in seen if e["conversation_id"] == str(conv.id)],
            timeout=10,
            what="the agent.responded event",
        )
        assert len(mine) == 1
        assert mine[0]["payload"]["message_id"] == str(reply.id)
        assert "content" not in mine[0]["payload"]
    finally:
        listener.stop()
        events._handlers["agent.responded"].remove(record)


def test_feed_is_replayable_from_any_point(db: str) -> None:
    client = agentq.Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    for i in range(3):
        client.post_message(conv.id, user.id, f"m{i}")
    feed = [e for e in client.events(since=0, limit=10_000) if e["conversation_id"] == str(conv.id)]
    assert [e["payload"]["seq"] for e in feed if e["type"] == "message.created"] == [1, 2, 3]
    later = client.events(since=feed[1]["cursor"], limit=10_000)
    assert [e["id"] for e in later if e["conversation_id"] == str(conv.id)] == [feed[2]["id"]]
    # the cursor is opaque and checked: an event id is not one
    with pytest.raises(InvalidInput) as caught:
        client.events(since=feed[1]["id"])
    assert caught.value.field == "since"


def test_published_events_are_marked_in_batches(db: str) -> None:
    from sqlalchemy import select

    from agentq.store.models import Event
    from agentq.store.session import reader

    client = agentq.Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    for i in range(5):
        client.post_message(conv.id, user.id, f"m{i}")
    bus.flush_marks()

    def unmarked() -> list[int]:
        with reader() as s:
            return list(
                s.scalars(
                    select(Event.id).where(
                        Event.conversation_id == conv.id, Event.published_at.is_(None)
                    )
                )
            )

    wait_until(lambda: not unmarked(), timeout=5, what="the published marks")
