"""The debounce scheduler (`agentq.runtime.timers.Scheduler`): windows due together are
taken from Redis a few at a time, atomically, and fired in one transaction a batch."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from agentq import turn
from agentq.client import Client
from agentq.runtime import timers
from agentq.runtime.redis import get_redis
from tests.helpers import jobs_of, wait_until


def crowd(client: Client, n: int, debounce: float = 0.3) -> list[uuid.UUID]:
    """`n` DMs of one agent, each with one message posted: n windows armed."""
    get_redis().delete(timers._due_key())  # windows other tests armed in this Redis
    agent = client.create_agent(
        f"crowd-{uuid.uuid4().hex[:6]}", max_concurrent_jobs=100, rate_limit_per_minute=600
    )
    convs = []
    for i in range(n):
        conv = client.create_conversation(
            "dm", settings={"debounce_seconds": debounce, "max_wait_seconds": 10}
        )
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        client.post_message(conv.id, user.id, f"hello {i}")
        convs.append(conv.id)
    return convs


class Recorder:
    """A scheduler's `fire`: records each batch, then fires it as the workers do."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def __call__(self, conv_ids: list[str]) -> int:
        with self._lock:
            self.batches.append(list(conv_ids))
        return turn.fire_taken(conv_ids)

    @property
    def taken(self) -> list[str]:
        return [c for batch in self.batches for c in batch]


def test_windows_due_together_are_fired_in_batches_each_once(db: str) -> None:
    client = Client()
    convs = crowd(client, 20)
    assert all(timers.armed(c) for c in convs)
    time.sleep(0.35)  # every window is due before the loop first looks
    fire = Recorder()
    scheduler = timers.Scheduler(fire, take=8, loops=1).start()
    try:
        wait_until(lambda: all(jobs_of(c) for c in convs), timeout=20, what="20 jobs")
    finally:
        scheduler.stop()
    assert [len(b) for b in fire.batches] == [8, 8, 4]
    assert sorted(fire.taken) == sorted(map(str, convs))
    for conv in convs:
        (job,) = jobs_of(conv)
        assert (job.status, job.lease_token) == ("active", 1)  # claimed in the same batch
        assert timers.armed(conv) is None


def test_two_loops_never_take_the_same_window(db: str) -> None:
    if db.startswith("sqlite"):
        pytest.skip("one writer at a time on SQLite: the race is PostgreSQL's")
    client = Client()
    convs = crowd(client, 60, debounce=0.2)
    time.sleep(0.25)
    fire = Recorder()
    loops = [timers.Scheduler(fire, take=4, loops=3).start() for _ in range(2)]
    try:
        wait_until(lambda: all(jobs_of(c) for c in convs), timeout=30, what="60 jobs")
    finally:
        for loop in loops:
            loop.stop()
    assert not [c for c, n in Counter(fire.taken).items() if n > 1]
    assert sorted(fire.taken) == sorted(map(str, convs))
    assert all(len(jobs_of(c)) == 1 for c in convs)


def test_a_window_that_cannot_fire_does_not_hold_back_the_others(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    convs = crowd(client, 3, debounce=0.2)
    gone = uuid.uuid4()  # a window whose conversation no longer exists
    get_redis().zadd(timers._due_key(), {str(gone): 0})
    time.sleep(0.25)
    made = turn.fire_taken(timers.take_due(10)[0])
    assert made == 3
    assert all(len(jobs_of(c)) == 1 for c in convs)
    # gone: refused (SQLite) or skipped by the batch's lock and looked at again (PostgreSQL)
    assert f"window of {gone} not fired" in caplog.text or timers.armed(gone)
