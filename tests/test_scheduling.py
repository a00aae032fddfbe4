"""Scheduling under backlog (issue 16): waiting costs nothing per conversation, and the
reconciler finds lost work however much else waits.

Steps are driven by hand on a Redis no worker listens on, so what each step sends is
read straight from the control queue.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from agentq import turn
from agentq.client import Client
from agentq.clock import utcnow
from agentq.config import reset_settings
from agentq.errors import JobNotRetryable
from agentq.ops.reconcile import reconcile_once
from agentq.providers import ChatResult
from agentq.runtime import limits
from agentq.runtime.broker import CONTROL_QUEUE
from agentq.runtime.embedded import EmbeddedRedis
from agentq.runtime.redis import get_redis
from agentq.store.models import Job
from agentq.store.session import transaction
from agentq.testing.stack import use_env
from tests.helpers import jobs_of, replies_of

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


def queued() -> Counter[tuple[str, str]]:
    """(task, first argument) of every task waiting in the control queue."""
    sent: Counter[tuple[str, str]] = Counter()
    for raw in get_redis().lrange(CONTROL_QUEUE, 0, -1):
        headers = json.loads(raw)["headers"]
        sent[(headers["task"], headers["argsrepr"].strip("(),' "))] += 1
    return sent


def conversations_of(client: Client, agent_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    """`n` DMs with the agent, each with one message dispatched into a waiting job."""
    convs = []
    for i in range(n):
        conv = client.create_conversation("dm", settings=NOW)
        client.add_participant(conv.id, agent=agent_id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        client.post_message(conv.id, user.id, f"question {i}")
        turn.dispatch_due(conv.id)
        convs.append(conv.id)
    return convs


@pytest.fixture
def control(module_db: str, base_env: dict[str, str], quiet_redis: EmbeddedRedis) -> None:
    """A database of this module's own (the session's has a live reconciler, which would
    drive what these tests leave parked) and a Redis no worker listens on."""
    use_env({**base_env, "AGENTQ_DATABASE_URL": module_db, "AGENTQ_REDIS_URL": quiet_redis.url})
    get_redis().delete(CONTROL_QUEUE)


def test_parked_conversations_cost_one_check_and_wake_oldest_first(control: None) -> None:
    client = Client()
    agent = client.create_agent(f"busy-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=1)
    convs = conversations_of(client, agent.id, 6)
    claim = turn.advance(convs[0])
    assert claim is not None
    get_redis().delete(CONTROL_QUEUE)

    for conv in convs[1:]:  # the agent is at its limit: each parks
        assert turn.advance(conv) is None
    # No countdown per conversation: one check for the agent, whatever the number parked.
    assert queued() == Counter({("agentq.wake_agent", str(agent.id)): 1})
    # The check finds no free slot: it wakes nobody, and arms nothing more.
    get_redis().delete(CONTROL_QUEUE)
    assert turn.check_agent(agent.id) == 0
    assert queued() == Counter()

    # The running job's reply frees the slot: the conversation parked longest is woken.
    assert turn.complete(claim.job_id, ChatResult(content="done", model="m"), claim.token)
    assert queued() == Counter({("agentq.advance", str(convs[1])): 1})
    for i, conv in enumerate(convs[1:], start=1):
        get_redis().delete(CONTROL_QUEUE)
        next_claim = turn.advance(conv)
        assert next_claim is not None, f"conversation {i} did not start when woken"
        assert turn.complete(
            next_claim.job_id, ChatResult(content=f"a{i}", model="m"), next_claim.token
        )
        woken = [c for (task, c) in queued() if task == "agentq.advance"]
        assert woken == ([str(convs[i + 1])] if i + 1 < len(convs) else [])
    assert all(len(replies_of(c)) == 1 for c in convs)


def test_an_agent_held_by_its_rate_limit_wakes_nobody_until_it_allows_a_start(
    control: None,
) -> None:
    client = Client()
    agent = client.create_agent(
        f"rated-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=5, rate_limit_per_minute=1
    )
    convs = conversations_of(client, agent.id, 4)
    claim = turn.advance(convs[0])  # the one start this period allows
    assert claim is not None
    for conv in convs[1:]:
        assert turn.advance(conv) is None  # parked at the rate limit, slots free
    get_redis().delete(CONTROL_QUEUE)
    # Four slots are free but no start is: a wake would only park them again.
    assert turn.wake_agent(agent.id) == 0
    assert queued() == Counter()


def test_a_lost_worker_is_found_behind_hundreds_parked_on_a_paused_agent(control: None) -> None:
    client = Client()
    paused = client.create_agent(f"paused-{uuid.uuid4().hex[:8]}")
    client.pause_agent(paused.id)
    parked = conversations_of(client, paused.id, 600)  # more than a reconciler page
    agent = client.create_agent(f"lost-{uuid.uuid4().hex[:8]}")
    (conv,) = conversations_of(client, agent.id, 1)
    claim = turn.advance(conv)
    assert claim is not None
    # Its worker dies: the lease runs out and nothing gives its slot back.
    with transaction() as tx:
        tx.execute(
            update(Job)
            .where(Job.id == claim.job_id)
            .values(lease_until=utcnow() - timedelta(seconds=5))
        )
    get_redis().delete(CONTROL_QUEUE)
    limits.release(agent.id, claim.job_id)

    report = reconcile_once()  # (the database may hold other tests' lost jobs too)
    assert report.advanced >= 1
    (job,) = jobs_of(conv)
    assert job.lease_token == claim.token + 1  # claimed again, in the first pass
    # The parked conversations cost nothing: their agent is paused.
    advanced = {c for task, c in queued() if task == "agentq.advance"}
    assert not advanced & {str(c) for c in parked}
    assert all(j.status == "waiting" for c in parked for j in jobs_of(c))


def test_a_slot_left_taken_by_a_crash_is_given_back(control: None) -> None:
    client = Client()
    agent = client.create_agent(f"orphan-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=1)
    first, second = conversations_of(client, agent.id, 2)
    claim = turn.advance(first)
    assert claim is not None
    assert turn.complete(claim.job_id, ChatResult(content="done", model="m"), claim.token)
    # As if the process died between the commit and giving the slot back.
    assert limits.acquire(agent.id, claim.job_id, max_running=1, per_minute=100).ok
    get_redis().delete(CONTROL_QUEUE)
    assert turn.advance(second) is None  # parked behind the orphan slot

    # Past the grace the reconciler gives the slot back and wakes the parked conversation.
    with transaction() as tx:
        tx.execute(
            update(Job)
            .where(Job.conversation_id == second)
            .values(created_at=utcnow() - timedelta(seconds=5))
        )
    report = reconcile_once()  # (other tests' agents may be in the same pass)
    assert report.orphan_slots >= 1
    assert limits.running(agent.id) == 0
    assert ("agentq.advance", str(second)) in queued()  # woken
    assert turn.advance(second) is not None


def test_a_job_whose_messages_were_carried_into_another_is_not_retried(control: None) -> None:
    client = Client()
    for policy in ("interrupt", "rollback"):
        agent = client.create_agent(f"carry-{uuid.uuid4().hex[:8]}")
        conv = client.create_conversation("dm", settings={**NOW, "double_texting": policy})
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id="u")
        client.post_message(conv.id, user.id, "first")
        turn.dispatch_due(conv.id)
        first = turn.advance(conv.id)
        assert first is not None
        client.post_message(conv.id, user.id, "second")
        turn.dispatch_due(conv.id, start=True)  # cancels the first job: the second covers both
        cancelled, replacement = jobs_of(conv.id)
        assert cancelled.status == "cancelled" and replacement.status != "cancelled"
        with pytest.raises(JobNotRetryable) as refused:
            client.retry_job(cancelled.id)
        why = str(refused.value)
        assert str(replacement.id) in why if policy == "interrupt" else "no message" in why
        assert jobs_of(conv.id)[0].status == "cancelled"  # nothing changed


@pytest.fixture
def capped(control: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AGENTQ_TENANT_MAX_CONCURRENT_JOBS", "2")
    reset_settings()
    yield
    monkeypatch.delenv("AGENTQ_TENANT_MAX_CONCURRENT_JOBS")
    reset_settings()


def test_a_tenant_at_its_cap_parks_and_its_own_freed_slot_wakes_it(capped: None) -> None:
    a, b = Client(tenant=f"a-{uuid.uuid4().hex[:6]}"), Client(tenant=f"b-{uuid.uuid4().hex[:6]}")
    first, second = (
        a.create_agent(f"a{i}-{uuid.uuid4().hex[:6]}", max_concurrent_jobs=5) for i in (1, 2)
    )
    a1, a2 = conversations_of(a, first.id, 2)
    (a3,) = conversations_of(a, second.id, 1)
    (b1,) = conversations_of(b, b.create_agent(f"b-{uuid.uuid4().hex[:6]}").id, 1)
    c1, c2 = turn.advance(a1), turn.advance(a2)
    assert c1 is not None and c2 is not None
    get_redis().delete(CONTROL_QUEUE)
    assert turn.advance(a3) is None  # tenant a runs 2 jobs: its cap, whatever the agent
    assert turn.advance(b1) is not None  # another tenant is not held back
    # One of a's jobs ends: its slot goes to a's conversation parked longest.
    assert turn.complete(c1.job_id, ChatResult(content="done", model="m"), c1.token)
    assert ("agentq.advance", str(a3)) in queued()
    assert turn.advance(a3) is not None
