"""Redis is a cache of intent: flush it and the reconciler rebuilds everything."""

from __future__ import annotations

import time

import pytest
import redis

from agentq.ops.reconcile import reconcile_once
from agentq.runtime import bus
from agentq.store.models import Event, Message, MessageJob
from agentq.store.session import reader
from tests.conftest import Live
from tests.helpers import count, jobs_of, make_dm, replies_of, wait_until


@pytest.mark.integration
def test_flushall_after_accepting_messages_loses_nothing(isolated: Live) -> None:
    client = isolated.client
    isolated.stack.start_worker(concurrency=10)
    convs = [
        make_dm(client, settings={"debounce_seconds": 1.0, "max_wait_seconds": 3})
        for _ in range(10)
    ]
    for conv, user, _ in convs:
        for i in range(3):
            client.post_message(conv.id, user.id, f"message {i}")
    # Every debounce timer and queued task is gone.
    redis.Redis.from_url(isolated.redis.url).flushall()
    isolated.stack.start_reconciler(interval=0.5)
    for conv, _, _ in convs:
        wait_until(lambda c=conv: replies_of(c.id), timeout=40, what="a reply after FLUSHALL")
    time.sleep(1.0)
    for conv, _, _ in convs:
        assert len(replies_of(conv.id)) == 1
        (job,) = jobs_of(conv.id)
        assert job.status == "completed"
        with reader() as s:
            users = (
                s.query(Message)
                .filter(Message.conversation_id == conv.id, Message.role == "user")
                .count()
            )
        assert (
            count(MessageJob, MessageJob.job_id == job.id, MessageJob.status == "trigger")
            == users
            == 3
        )


@pytest.mark.integration
def test_reconciler_publishes_events_a_crash_left_behind(isolated: Live) -> None:
    client = isolated.client
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    client.post_message(conv.id, user.id, "hello")
    bus.flush_marks()  # the marks thread must not mark them after we unmark them below
    with reader() as s:
        s.query(Event).update({Event.published_at: None})
        s.commit()
    assert count(Event, Event.published_at.is_(None)) > 0
    time.sleep(1.1)  # older than the grace period
    report = reconcile_once()
    assert report.events_published > 0
    assert count(Event, Event.published_at.is_(None)) == 0
