"""Adversarial tests of the debounce scheduler's batches (`timers.Scheduler`,
`turn.fire_taken`): where firing up to 8 windows in one transaction breaks what firing
each on its own kept (the lock order, one conversation's trouble staying its own, an
agent's rate limit), and that the loop runs in every pool that works the control queue."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from agentq import turn
from agentq.client import Client
from agentq.providers import ChatResult
from agentq.runtime import timers
from agentq.runtime.broker import CONTROL_QUEUE
from agentq.runtime.embedded import EmbeddedRedis
from agentq.runtime.redis import get_redis
from agentq.store.scratch import ADMIN_URL
from agentq.store.session import get_engine, transaction
from agentq.testing.stack import use_env
from agentq.turn.effects import AWAY_RETRY_SECONDS
from tests.conftest import Live
from tests.helpers import jobs_of, wait_until

SOON = {"debounce_seconds": 0.05, "max_wait_seconds": 1}


@pytest.fixture
def pg(base_env: dict[str, str], pg_url: str, quiet_redis: EmbeddedRedis) -> Iterator[str]:
    """PostgreSQL (row locks and deadlocks are its own; SQLite locks the whole database),
    no worker running: the tests fire batches themselves."""
    use_env({**base_env, "AGENTQ_DATABASE_URL": pg_url, "AGENTQ_REDIS_URL": quiet_redis.url})
    get_redis().delete(timers._due_key())
    yield pg_url


def dm(client: Client, agent_id: uuid.UUID, **settings: Any) -> tuple[uuid.UUID, uuid.UUID]:
    """A DM with the agent: (conversation, user)."""
    conv = client.create_conversation("dm", settings={**SOON, **settings})
    client.add_participant(conv.id, agent=agent_id)
    user = client.add_participant(conv.id, user_id=f"u-{uuid.uuid4().hex[:6]}")
    return conv.id, user.id


def agent(client: Client, **limits: int) -> uuid.UUID:
    fields = {"max_concurrent_jobs": 100, "rate_limit_per_minute": 600, **limits}
    return client.create_agent(f"adv-{uuid.uuid4().hex[:8]}", **fields).id


def lock_waiters() -> int:
    """Backends of this database waiting on a row lock."""
    with get_engine().connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_a_batch_does_not_deadlock_with_a_reply_in_one_of_its_conversations(pg: str) -> None:
    client = Client()
    bot = agent(client, max_concurrent_jobs=2)
    (a, a_user), (b, b_user) = sorted([dm(client, bot), dm(client, bot)])  # the batch's lock order
    client.post_message(b, b_user, "first")
    time.sleep(0.06)
    turn.dispatch_due(b)
    claim = turn.advance(b)  # B's job runs: one of the agent's two slots
    assert claim is not None
    client.post_message(a, a_user, "hello")  # A's window: its claim fills the agent
    client.post_message(b, b_user, "and another thing")  # B's next window (enqueue)
    time.sleep(0.06)

    engine = get_engine()
    role = threading.local()
    reply_holds_b, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def before(_c: object, _cur: object, statement: str, *_: object) -> None:
        # (the statement that frees the agent's slot writes the reply's rows too: a CTE)
        if getattr(role, "reply", False) and "UPDATE AGENTS" in statement.upper():
            reply_holds_b.set()  # the conversation and job are locked: the agent next
            go_on.wait(10)

    def failed(ctx: Any) -> None:
        errors.append(ctx.original_exception)

    def reply() -> None:
        role.reply = True
        turn.complete(claim.job_id, ChatResult(content="done", model="m"), claim.token)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "handle_error", failed)
    try:
        replying = threading.Thread(target=reply)
        replying.start()
        assert reply_holds_b.wait(5)
        started = time.monotonic()
        batch = threading.Thread(target=turn.fire_taken, args=([str(a), str(b)],))
        batch.start()
        waited_for = time.monotonic() + 1  # the batch waits for B (unless it skips B)
        while not lock_waiters() and batch.is_alive() and time.monotonic() < waited_for:
            time.sleep(0.01)
        go_on.set()
        replying.join(10)
        batch.join(10)
        took = time.monotonic() - started
    finally:
        go_on.set()
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "handle_error", failed)
    assert [j.status for j in jobs_of(b)][0] == "completed"
    assert len(jobs_of(a)) == 1 and len(jobs_of(b)) == 2
    assert not [e for e in errors if "deadlock" in str(e).lower()], took


def test_a_locked_conversation_does_not_hold_back_the_rest_of_its_batch(pg: str) -> None:
    hold = 1.0
    client = Client()
    bot = agent(client)
    convs = sorted(dm(client, bot) for _ in range(4))
    for conv, user in convs:
        client.post_message(conv, user, "hello")
    locked, others = convs[-1][0], convs[:-1]  # locked last: the others are locked first
    time.sleep(0.06)
    held, release = threading.Event(), threading.Event()

    def long_transaction() -> None:
        with transaction() as tx:
            tx.execute(
                text("SELECT id FROM conversations WHERE id = :id FOR UPDATE"), {"id": locked}
            )
            held.set()
            release.wait(hold)

    holder = threading.Thread(target=long_transaction)
    holder.start()
    assert held.wait(5)
    loop = timers.Scheduler(turn.fire_taken).start()
    try:
        started = time.monotonic()
        wait_until(lambda: not get_redis().zcard(timers._due_key()), timeout=5, every=0.01)
        time.sleep(0.05)  # the batch is under way
        client.post_message(others[0][0], others[0][1], "still there?")
        post_took = time.monotonic() - started
        wait_until(lambda: all(jobs_of(c) for c, _ in others[1:]), timeout=5, every=0.02)
        fire_took = time.monotonic() - started
    finally:
        release.set()
        holder.join()
        loop.stop()
    assert (post_took, fire_took) < (0.3, 0.3), (post_took, fire_took)


def test_a_failed_batch_does_not_spend_its_conversations_rate_limit(db: str) -> None:
    client = Client()
    get_redis().delete(timers._due_key())
    conv, user = dm(client, agent(client, rate_limit_per_minute=1))
    client.post_message(conv, user, "hello")
    gone = "ffffffff-ffff-4fff-bfff-ffffffffffff"  # sorted after `conv`: fired second
    time.sleep(0.06)
    assert turn.fire_taken([str(conv), gone]) == 1
    (job,) = jobs_of(conv)
    assert job.status == "active"  # its one start of the period, not parked for it


def test_a_prefork_worker_fires_windows_from_its_children(isolated: Live) -> None:
    # Not the test stack's threads pool: the loop starts in each prefork child (the
    # worker_process_init signal), not in the parent that only hands out tasks.
    isolated.stack.start_worker(queues=(CONTROL_QUEUE,), pool="prefork", concurrency=2)
    client = isolated.client
    conv, user = dm(client, agent(client), debounce_seconds=0.3)
    client.post_message(conv, user, "hello")  # due in 0.3 s: no dispatch task, the loop
    wait_until(lambda: jobs_of(conv), timeout=3, every=0.05, what="the window fired")


def test_windows_taken_while_the_database_is_away_fire_when_it_is_back(isolated: Live) -> None:
    client = isolated.client
    bot = agent(client)
    convs = [dm(client, bot) for _ in range(3)]
    for conv, user in convs:
        client.post_message(conv, user, "hello")
    first: dict[uuid.UUID, datetime] = {}
    for conv, _ in convs:
        due = timers.armed(conv)
        assert due is not None
        first[conv] = due

    def armed_again() -> bool:
        """Each window was taken, could not be fired and is armed again about a second on
        (not "none is armed": taken and armed again within milliseconds, a window is
        seldom seen gone from the set)."""
        later = timedelta(seconds=AWAY_RETRY_SECONDS / 2)
        now = {conv: timers.armed(conv) for conv in first}
        return all(at is not None and at >= first[c] + later for c, at in now.items())

    name = isolated.env["AGENTQ_DATABASE_URL"].rsplit("/", 1)[1]

    def connections(allowed: bool) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allowed}')
            if not allowed:  # a failover: every connection drops, none can be made
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )

    connections(False)
    loop = timers.Scheduler(turn.fire_taken).start()
    try:
        wait_until(armed_again, timeout=5, every=0.02, what="the windows armed again")
        connections(True)
        # fired again within AWAY_RETRY_SECONDS (one more try if it came just too early)
        wait_until(lambda: all(jobs_of(c) for c, _ in convs), timeout=3, what="windows fired")
    finally:
        connections(True)
        loop.stop()
