"""Exactly-once completion: duplicate deliveries and a worker killed mid-call."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select

from agentq import turn
from agentq.providers import ChatResult, call_with_retries, get_provider
from agentq.runtime import broker
from agentq.store.models import Agent, Job, LLMMessage, Message, MessageJob
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMServer
from tests.conftest import Live
from tests.helpers import count, jobs_of, make_dm, replies_of, wait_until
from tests.profile_support import declare_profile


@pytest.mark.integration
def test_completion_delivered_twice_writes_one_reply(isolated: Live) -> None:
    client = isolated.client
    conv, user, agent_id = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    # No worker runs yet: drive the job by hand up to its stored answer.
    job_id = turn.dispatch_due(conv.id).jobs[0]
    claim = turn.advance(conv.id)
    assert claim is not None and claim.job_id == job_id
    call = turn.prepare(job_id, claim.token)
    assert call is not None
    result = call_with_retries(
        get_provider(call.provider), call.request, max_retries=0, backoff_base=0.01, backoff_max=0.1
    )
    assert turn.store_result(job_id, claim.token, result)

    # The completion task is delivered twice through the broker, and run concurrently
    # in this process too.
    broker.send(broker.COMPLETE, job_id)
    broker.send(broker.COMPLETE, job_id)
    outcomes: list[bool] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(turn.complete(job_id))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    isolated.stack.start_worker(concurrency=4)
    time.sleep(1.0)

    assert outcomes.count(True) <= 1
    assert len(replies_of(conv.id)) == 1
    reply = replies_of(conv.id)[0]
    assert reply.reply_to_job_id == job_id
    assert count(LLMMessage, LLMMessage.message_id == reply.id) == 1
    assert count(MessageJob, MessageJob.job_id == job_id, MessageJob.status == "reply") == 1
    with reader() as s:
        assert s.get(Job, job_id).status == "completed"
        assert s.get(Agent, agent_id).total_responses == 1
        assert s.get(Agent, agent_id).status == "active"


def test_an_answer_for_a_stale_claim_writes_nothing(db: str) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from agentq.client import Client
    from agentq.providers import ChatResult
    from agentq.store.models import utcnow
    from agentq.store.session import transaction

    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    job_id = turn.dispatch_due(conv.id, start=True).jobs[0]
    (job,) = jobs_of(conv.id)
    stale = job.lease_token
    # Its worker is presumed dead: the lease runs out and the job is claimed again.
    with transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(1)))
    claim = turn.advance(conv.id)
    assert claim is not None and claim.token == stale + 1

    assert not turn.complete(job_id, ChatResult(content="late", model="m"), stale)
    assert replies_of(conv.id) == []
    assert turn.complete(job_id, ChatResult(content="current", model="m"), claim.token)
    assert [m.content for m in replies_of(conv.id)] == ["current"]
    assert not turn.complete(job_id, ChatResult(content="again", model="m"), claim.token)


@pytest.mark.integration
def test_worker_killed_mid_call_completes_after_restart(isolated: Live) -> None:
    with FakeLLMServer(latency=3.0) as slow:
        client = isolated.client
        conv, user, _ = make_dm(
            client,
            settings={"debounce_seconds": 0, "max_wait_seconds": 0},
            model_config={"profile": declare_profile(slow.url)},
        )
        first = isolated.stack.start_worker(concurrency=4)
        client.post_message(conv.id, user.id, "take your time")
        wait_until(lambda: slow.stats()["in_flight"] >= 1, timeout=15, what="the LLM call")
        isolated.stack.kill(first)  # SIGKILL, in the middle of the HTTP call
        assert [j.status for j in jobs_of(conv.id)] == ["active"]

        isolated.stack.start_worker(concurrency=4)
        isolated.stack.start_reconciler(interval=0.5)
        wait_until(lambda: replies_of(conv.id), timeout=40, what="the reply after restart")
        time.sleep(1.0)
        assert len(replies_of(conv.id)) == 1
        (job,) = jobs_of(conv.id)
        assert job.status == "completed" and job.attempts == 2
        with reader() as s:
            assert s.scalar(select(Message.content).where(Message.reply_to_job_id == job.id))


def test_a_reply_in_an_autonomous_channel_is_dispatched_to_the_next_agent(db: str) -> None:
    from agentq.client import Client
    from agentq.providers import ChatResult

    client = Client()
    conv = client.create_conversation(
        "channel", settings={"autonomous": True, "debounce_seconds": 0, "max_wait_seconds": 0}
    )
    first = client.create_agent(f"First{uuid.uuid4().hex[:6]}")
    second = client.create_agent(f"Second{uuid.uuid4().hex[:6]}")
    client.add_participant(conv.id, agent=first.id)
    client.add_participant(conv.id, agent=second.id)
    user = client.add_participant(conv.id, user_id="u1")
    client.post_message(conv.id, user.id, f"@{first.name} start us off")
    job_id = turn.dispatch_due(conv.id, start=True).jobs[0]
    (job,) = jobs_of(conv.id)
    assert job.agent_id == first.id and job.status == "active"

    assert turn.complete(job_id, ChatResult(content="over to you", model="m"), job.lease_token)

    # The reply opened a window that was due at once: the completion dispatched it
    # (no worker and no reconciler run here), and the other agent answers it.
    answering = [j for j in jobs_of(conv.id) if j.id != job_id]
    assert [(j.agent_id, j.status) for j in answering] == [(second.id, "active")]
    with reader() as s:
        trigger = s.get(Message, answering[0].trigger_message_id)
        assert trigger.role == "assistant" and trigger.reply_to_job_id == job_id


@pytest.mark.integration
def test_redelivered_llm_task_writes_the_stored_answer_without_calling_the_provider(
    isolated: Live, fake_llm: FakeLLMServer
) -> None:
    # Regression: a run_job redelivered after its answer was stored built a ChatRequest
    # without its model and crashed, so the answer was never written by that path.
    client = isolated.client
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    job_id = turn.dispatch_due(conv.id).jobs[0]
    claim = turn.advance(conv.id)
    assert claim is not None
    assert turn.store_result(job_id, claim.token, ChatResult(content="kept", model="m"))
    fake_llm.reset_stats()

    turn.run_job(job_id, claim.token)  # as the redelivered LLM task would

    assert fake_llm.stats()["requests"] == 0
    (reply,) = replies_of(conv.id)
    assert reply.content == "kept" and reply.reply_to_job_id == job_id
    with reader() as s:
        assert s.get(Job, job_id).status == "completed"
