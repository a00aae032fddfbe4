"""The lock order (conversation, job, agent: `agentq.store.session.LOCK_ORDER`) holds in
every step that races another: run two of them at once, many times, with a random pause
before each SQL statement so that their statements interleave differently each run, and
PostgreSQL never finds a deadlock.

Pairs raced: a reply against the re-claim of its job (its lease ran out), a reply
against an interrupt that cancels the job, stopping the agent against a claim, and two
replies and a claim of one agent in different conversations.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from agentq import turn
from agentq.client import Client
from agentq.clock import utcnow
from agentq.providers import ChatResult
from agentq.runtime.broker import CONTROL_QUEUE
from agentq.runtime.embedded import EmbeddedRedis
from agentq.runtime.redis import get_redis
from agentq.store.migrate import upgrade
from agentq.store.models import Job
from agentq.store.scratch import create_database, drop_database
from agentq.store.session import DatabaseError, dispose_engines, get_engine, transaction
from agentq.testing.stack import use_env

pytestmark = pytest.mark.integration

RUNS = 200
NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


@pytest.fixture
def jitter(base_env: dict[str, str], quiet_redis: EmbeddedRedis) -> Iterator[None]:
    """A PostgreSQL database of the test's own (deadlocks are PostgreSQL's: SQLite locks
    the whole database; and no live reconciler may drive what the races leave), and a
    random pause of up to 3 ms before every statement of the racing threads."""
    url = create_database()
    upgrade(url)
    use_env({**base_env, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": quiet_redis.url})
    racing = threading.local()

    def pause(*_: object) -> None:
        if getattr(racing, "on", False):
            time.sleep(random.uniform(0, 0.003))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", pause)
    global _racing
    _racing = racing
    yield
    event.remove(engine, "before_cursor_execute", pause)
    dispose_engines()
    drop_database(url)


_racing: threading.local


def race(*steps: Callable[[], object]) -> list[BaseException]:
    """Run the steps at once; the errors they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(steps))

    def run(step: Callable[[], object]) -> None:
        _racing.on = True
        start.wait()
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def claimed(client: Client, agent_id: uuid.UUID, policy: str = "enqueue") -> tuple:
    conv = client.create_conversation("dm", settings={**NOW, "double_texting": policy})
    client.add_participant(conv.id, agent=agent_id)
    user = client.add_participant(conv.id, user_id="u")
    client.post_message(conv.id, user.id, "hello")
    turn.dispatch_due(conv.id)
    claim = turn.advance(conv.id)
    assert claim is not None
    return conv.id, user.id, claim


def expire(job_id: uuid.UUID) -> None:
    with transaction() as tx:
        tx.execute(
            update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )


def answer(text: str) -> ChatResult:
    return ChatResult(content=text, model="m")


def one_race(client: Client, kind: int) -> list[BaseException]:
    """Set up race `kind` on a fresh agent and run it; the errors it raised."""
    agent = client.create_agent(f"race-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=2)
    if kind == 0:  # a reply against the re-claim of its job
        conv, _, c = claimed(client, agent.id)
        expire(c.job_id)
        return race(
            lambda: turn.complete(c.job_id, answer("late"), c.token),
            lambda: turn.advance(conv),
        )
    if kind == 1:  # a reply against an interrupt cancelling its job
        conv, user, c = claimed(client, agent.id, "interrupt")
        client.post_message(conv, user, "one more thing")
        return race(
            lambda: turn.complete(c.job_id, answer("first"), c.token),
            lambda: turn.dispatch_due(conv, start=True),
        )
    if kind == 2:  # stopping the agent against a claim
        claimed(client, agent.id)
        other = waiting(client, agent.id)
        return race(lambda: client.stop_agent(agent.id), lambda: turn.advance(other))
    # two replies and a claim of one agent, in three conversations
    _, _, a = claimed(client, agent.id)
    _, _, b = claimed(client, agent.id)
    third = waiting(client, agent.id)
    return race(
        lambda: turn.complete(a.job_id, answer("a"), a.token),
        lambda: turn.complete(b.job_id, answer("b"), b.token),
        lambda: turn.advance(third),
    )


def waiting(client: Client, agent_id: uuid.UUID) -> uuid.UUID:
    """A DM with the agent whose job waits to be claimed."""
    conv = client.create_conversation("dm", settings=NOW)
    client.add_participant(conv.id, agent=agent_id)
    user = client.add_participant(conv.id, user_id="u2")
    client.post_message(conv.id, user.id, "hi")
    turn.dispatch_due(conv.id)
    return conv.id


def test_racing_steps_never_deadlock(jitter: None) -> None:
    client = Client()
    outcomes: Counter[str] = Counter()
    for run in range(RUNS):
        get_redis().delete(CONTROL_QUEUE)
        for exc in one_race(client, run % 4):
            deadlock = isinstance(exc, DatabaseError) and "deadlock" in str(exc).lower()
            outcomes["deadlock" if deadlock else type(exc).__name__] += 1
        outcomes["runs"] += 1
    assert outcomes == Counter({"runs": RUNS}), outcomes
