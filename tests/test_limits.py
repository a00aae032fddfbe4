"""Per-agent limits in Redis (a real redis-server), and their repair by the reconciler."""

from __future__ import annotations

import uuid

from agentq import turn
from agentq.client import Client
from agentq.ops.reconcile import reconcile_once
from agentq.runtime import limits
from tests.helpers import jobs_of, make_dm


def test_concurrency_slots_are_taken_once_per_job_and_given_back(db: str) -> None:
    agent = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    assert limits.acquire(agent, a, max_running=1, per_minute=100).ok
    assert limits.acquire(agent, a, max_running=1, per_minute=100).ok  # idempotent per job
    blocked = limits.acquire(agent, b, max_running=1, per_minute=100)
    assert not blocked.ok and blocked.retry_in is None
    limits.release(agent, a)
    assert limits.acquire(agent, b, max_running=1, per_minute=100).ok


def test_rate_limit_says_when_the_next_start_is_allowed(db: str) -> None:
    agent = uuid.uuid4()
    for _ in range(3):
        job = uuid.uuid4()
        assert limits.acquire(agent, job, max_running=10, per_minute=3).ok
        limits.release(agent, job)
    verdict = limits.acquire(agent, uuid.uuid4(), max_running=10, per_minute=3)
    assert not verdict.ok and 0 < verdict.retry_in <= 60


def test_reconciler_restores_running_slots_but_not_finished_ones(db: str) -> None:
    client = Client()
    conv, user, agent_id = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    turn.dispatch_due(conv.id)
    claim = turn.advance(conv.id)
    assert claim is not None and limits.running(agent_id) == 1
    limits.release(agent_id, claim.job_id)  # as if Redis lost it
    reconcile_once()
    assert limits.running(agent_id) == 1  # restored: the job still runs
    # A job that finished is never given a slot back.
    added = limits.restore(agent_id, [uuid.uuid4()])
    from agentq.ops.reconcile import _forget_finished

    _forget_finished(agent_id, added)
    assert limits.running(agent_id) == 1
    assert [j.status for j in jobs_of(conv.id)] == ["active"]
