"""Adversarial review of the hot-path statement cuts (be2b357, 8383ac9, 91cd44b, a10e94f).

On PostgreSQL (READ COMMITTED) a statement that waits for the conversation's row lock
re-reads that row after the wait, but its other reads (joins, subqueries) see the
snapshot taken before it. Each test makes a step wait behind a transaction that changes
what the step reads, and checks the step saw the change: what may change during the
wait is read after the lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from agentq import turn
from agentq.client import Client
from agentq.clock import utcnow
from agentq.providers import ChatResult
from agentq.states import ParticipantKind
from agentq.store import conversations
from agentq.store.session import Tx, transaction
from agentq.turn import dispatch
from tests.helpers import jobs_of, make_dm, replies_of, wait_until


def behind(hold: Callable[[Tx], object], step: Callable[[], object]) -> list[object]:
    """Run `hold` in a transaction kept open, then `step` in another thread, which waits
    for the conversation's lock; commit `hold` a second later. Returns what `step` gave."""
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction() as tx:
            hold(tx)
            holding.set()
            release.wait(10)

    held = threading.Thread(target=holder)
    held.start()
    assert holding.wait(10)
    results: list[object] = []
    stepping = threading.Thread(target=lambda: results.append(step()))
    stepping.start()
    time.sleep(1.0)  # the step's first statement waits for the conversation's lock
    release.set()
    held.join(10)
    stepping.join(20)
    return results


@pytest.fixture
def postgresql(db: str) -> None:
    if not db.startswith("postgresql"):
        pytest.skip("SQLite has one writer: no lock wait")


@pytest.mark.usefixtures("postgresql")
def test_a_reply_blocked_behind_a_dispatch_starts_the_job_that_dispatch_made() -> None:
    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    first = turn.dispatch_due(conv.id, start=True).jobs[0]
    (job,) = jobs_of(conv.id)
    assert job.status == "active"
    client.post_message(conv.id, user.id, "and another thing")  # queued behind `first`

    done = behind(
        lambda tx: dispatch.dispatch(tx, conv.id),  # makes the second job, waiting
        lambda: turn.complete(first, ChatResult(content="hi", model="m"), job.lease_token),
    )
    assert done == [True]
    assert [m.content for m in replies_of(conv.id)] == ["hi"]
    second = [j for j in jobs_of(conv.id) if j.id != first]
    assert len(second) == 1
    # The reply finished the open job: the one waiting behind it is started (claimed).
    wait_until(
        lambda: [j.status for j in jobs_of(conv.id) if j.id != first] == ["active"],
        timeout=5,
        what="the waiting job to be claimed after the reply",
    )


def join(conv_id: uuid.UUID, kind: ParticipantKind, **who: object) -> Callable[[Tx], object]:
    """A participant's join, as ops.conversations.add_participant makes it: under the
    conversation's lock."""

    def joining(tx: Tx) -> object:
        conversations.lock(tx, conv_id)
        return conversations.add_participant(tx, conv_id, kind, "late", now=utcnow(), **who)  # type: ignore[arg-type]

    return joining


@pytest.mark.usefixtures("postgresql")
def test_a_dispatch_blocked_behind_a_join_sees_the_agent_that_joined() -> None:
    client = Client()
    agent = client.create_agent(f"bot-{uuid.uuid4().hex[:8]}")
    conv = client.create_conversation("dm", settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    user = client.add_participant(conv.id, user_id=f"user-{uuid.uuid4().hex[:6]}")
    client.post_message(conv.id, user.id, "anyone there?")
    assert jobs_of(conv.id) == []

    made = behind(
        join(conv.id, ParticipantKind.AGENT, agent_id=agent.id),
        lambda: turn.dispatch_due(conv.id).jobs,
    )
    # The dispatch ran after the join committed: the agent answers the pending message.
    assert made and len(made[0]) == 1  # type: ignore[arg-type]
    assert [j.agent_id for j in jobs_of(conv.id)] == [agent.id]


@pytest.mark.usefixtures("postgresql")
def test_a_post_blocked_behind_its_authors_join_is_accepted() -> None:
    client = Client()
    conv = client.create_conversation("channel")
    late = uuid.uuid4()

    def joining(tx: Tx) -> object:
        conversations.lock(tx, conv.id)
        row = conversations.add_participant(
            tx, conv.id, ParticipantKind.USER, "late", user_id=f"late-{late.hex[:6]}", now=utcnow()
        )
        joined.append(row.id)
        return row

    joined: list[uuid.UUID] = []
    posted = behind(joining, lambda: client.post_message(conv.id, joined[0], "made it"))
    assert posted, "the post of the participant who had just joined was refused"
