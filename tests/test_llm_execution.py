"""LLM calls as real LLMs behave, against real worker processes and the fake LLM over HTTP:
calls longer than the lease run once, a dead worker's job is re-driven in seconds, and an
interrupt closes the provider's connection."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from agentq.client import Client
from agentq.config import Settings, get_settings
from agentq.store.models import LLMMessage, Message
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.conftest import Live, stack_with
from tests.helpers import events_of, jobs_of, make_dm, replies_of, trigger_links, wait_until

pytestmark = pytest.mark.integration

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}
#: the defaults of what the suite's FAST settings shorten
DEFAULTS = {
    f"AGENTQ_{name.upper()}": str(Settings.model_fields[name].default)
    for name in (
        "job_lease_seconds",
        "claim_pickup_seconds",
        "reconcile_interval_seconds",
        "reconcile_grace_seconds",
    )
}


def test_calls_three_times_longer_than_the_lease_run_once(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=6.0)) as llm,
        stack_with(base_env, tmp_path, llm, AGENTQ_JOB_LEASE_SECONDS="2") as stack,
    ):
        stack.start_worker(concurrency=8)
        stack.start_reconciler(interval=0.5)
        client = Client()
        dms = [make_dm(client, settings=NOW) for _ in range(5)]
        for conv, user, _ in dms:
            client.post_message(conv.id, user.id, "think about it for a while")
        wait_until(
            lambda: all(len(replies_of(c.id)) == 1 for c, _, _ in dms),
            timeout=60,
            what="five replies",
        )
        time.sleep(2.5)  # a lost lease would show as a second request by now
        assert llm.stats()["requests"] == 5
        assert [j.attempts for c, _, _ in dms for j in jobs_of(c.id)] == [1] * 5
        assert all(len(replies_of(c.id)) == 1 for c, _, _ in dms)


def test_a_killed_workers_job_is_answered_within_30s_with_default_settings(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=3.0)) as llm,
        stack_with(base_env, tmp_path, llm, **DEFAULTS) as stack,
    ):
        doomed = stack.start_worker(concurrency=4)
        stack.start_reconciler(interval=5.0)  # the default interval
        client = Client()
        conv, user, _ = make_dm(client, settings=NOW)
        client.post_message(conv.id, user.id, "hello")
        wait_until(lambda: llm.stats()["in_flight"] == 1, timeout=20, what="the call")
        time.sleep(1.0)
        stack.kill(doomed)
        killed_at = time.monotonic()
        stack.start_worker(concurrency=4)
        wait_until(lambda: len(replies_of(conv.id)) == 1, timeout=60, what="the reply")
        took = time.monotonic() - killed_at
        print(f"figure: the reply came {took:.1f}s after the kill")
        assert took < 30, f"the reply came {took:.1f}s after the kill"
        (job,) = jobs_of(conv.id)
        assert job.status == "completed" and job.attempts == 2


def test_interrupt_closes_the_running_call_and_holds_the_slot_until_it_ended(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=5.0)) as llm,
        stack_with(base_env, tmp_path, llm) as stack,
    ):
        stack.start_worker(concurrency=8)
        stack.start_reconciler(interval=1.0)
        client = Client()
        settings = {**NOW, "double_texting": "interrupt"}
        conv, user, _ = make_dm(
            client, settings=settings, name=f"solo-{uuid.uuid4().hex[:6]}", max_concurrent_jobs=1
        )
        client.post_message(conv.id, user.id, "first thought")
        wait_until(lambda: llm.stats()["in_flight"] == 1, timeout=20, what="the first call")
        client.post_message(conv.id, user.id, "second thought, interrupting")
        posted_at = time.monotonic()
        wait_until(
            lambda: llm.stats()["client_disconnects"] >= 1,
            timeout=10,
            every=0.02,
            what="the first call's connection closed by the client",
        )
        closed_after = time.monotonic() - posted_at
        print(f"figure: the first call was closed {closed_after:.2f}s after the message")
        wait_until(lambda: len(replies_of(conv.id)) == 1, timeout=30, what="one reply")
        stats = llm.stats()
        assert closed_after < 1.0, f"the call was closed {closed_after:.2f}s after the message"
        assert stats["peak_in_flight"] == 1
        first, second = jobs_of(conv.id)
        assert first.status == "cancelled" and second.status == "completed"
        assert trigger_links(second.id) == [1, 2]


@pytest.mark.parametrize(
    ("script", "attempts", "requests", "outcome"),
    [
        (["longmodel"], 1, 1, "replied"),
        (["nulmodel"], 1, 1, "replied"),
        (["hugetokens"], 1, 1, "replied"),
        (["nulerror"], 1, 2, "replied"),  # a 500, retried inside the attempt
        (["empty"], 2, 1, "replied"),  # an empty reply costs an attempt; the next answers
        (["empty", "empty", "empty"], 3, 0, "failed"),  # every attempt empty: visibly failed
        (["length"], 1, 1, "replied"),
    ],
)
def test_hostile_provider_answers_end_in_a_reply_or_a_visible_failure(
    live: Live,
    fake_llm: FakeLLMServer,
    script: list[str],
    attempts: int,
    requests: int,
    outcome: str,
) -> None:
    # The fake LLM is shared with the live stack: the job's own records count its calls
    # (attempts, and the HTTP requests of the attempt that answered).
    client = Client()
    conv, user, _ = make_dm(client, settings=NOW)
    fake_llm.control(script=script)
    client.post_message(conv.id, user.id, "say something odd")
    started = time.monotonic()
    wait_until(
        lambda: jobs_of(conv.id) and jobs_of(conv.id)[0].status in ("completed", "failed"),
        timeout=30,
        what="the job's end",
    )
    took = time.monotonic() - started
    (job,) = jobs_of(conv.id)
    assert took < get_settings().job_lease_seconds, f"it took {took:.1f}s"
    assert job.attempts == attempts
    if outcome == "failed":
        assert job.status == "failed" and "empty reply" in (job.failure_reason or "")
        notes = [m for m in messages_of(conv.id) if m.role == "system"]
        assert len(notes) == 1 and "could not respond" in notes[0].content
        return
    assert job.status == "completed"
    assert job.result is not None and job.result["requests"] == requests
    (reply,) = replies_of(conv.id)
    assert "\x00" not in reply.content
    with reader() as s:
        row = s.scalars(select(LLMMessage).where(LLMMessage.message_id == reply.id)).one()
    assert row.model is not None and len(row.model) <= 200 and "\x00" not in row.model
    assert 0 <= row.prompt_tokens < 2**31 and 0 <= row.completion_tokens < 2**31
    if script == ["length"]:
        notices = [e for e in events_of(conv.id, "status.info") if e.payload.get("data", {})]
        assert any(e.payload["data"].get("reason") == "truncated" for e in notices)


def messages_of(conversation_id: uuid.UUID) -> list[Message]:
    with reader() as s:
        return list(
            s.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.seq)
            )
        )


def test_a_queue_backlog_longer_than_the_lease_costs_no_attempt(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    # Six calls of 3 s on two threads: the last LLM task waits ~6 s in the queue, longer
    # than the lease and the claim's pickup time. A claim not taken up is claimed again,
    # but only a call that started counts as an attempt, and each job calls once.
    with (
        FakeLLMServer(FakeLLMConfig(latency=3.0)) as llm,
        stack_with(
            base_env,
            tmp_path,
            llm,
            AGENTQ_JOB_LEASE_SECONDS="2",
            AGENTQ_CLAIM_PICKUP_SECONDS="2",
        ) as stack,
    ):
        stack.start_worker(queues=("agentq.control",), concurrency=8)
        stack.start_worker(queues=("agentq.llm",), concurrency=2)
        stack.start_reconciler(interval=0.5)
        client = Client()
        dms = [make_dm(client, settings=NOW) for _ in range(6)]
        for conv, user, _ in dms:
            client.post_message(conv.id, user.id, "take your time")
        wait_until(
            lambda: all(len(replies_of(c.id)) == 1 for c, _, _ in dms), timeout=90, what="replies"
        )
        assert [(j.status, j.attempts) for c, _, _ in dms for j in jobs_of(c.id)] == [
            ("completed", 1)
        ] * 6
        assert llm.stats()["requests"] == 6


def test_an_agents_limit_holds_through_calls_longer_than_twice_the_lease(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=4.0)) as llm,
        stack_with(
            base_env,
            tmp_path,
            llm,
            AGENTQ_JOB_LEASE_SECONDS="1",
            AGENTQ_CLAIM_PICKUP_SECONDS="1",
        ) as stack,
    ):
        stack.start_worker(concurrency=8)
        stack.start_reconciler(interval=0.5)
        client = Client()
        agent = client.create_agent(f"one-{uuid.uuid4().hex[:6]}", max_concurrent_jobs=1)
        convs = []
        for i in range(2):
            conv = client.create_conversation("dm", settings=NOW)
            client.add_participant(conv.id, agent=agent.id)
            user = client.add_participant(conv.id, user_id=f"u{i}")
            convs.append((conv, user))
        for conv, user in convs:
            client.post_message(conv.id, user.id, "one at a time")
        wait_until(
            lambda: all(len(replies_of(c.id)) == 1 for c, _ in convs), timeout=60, what="replies"
        )
        assert llm.stats()["peak_in_flight"] == 1


def test_stopping_an_agent_closes_its_running_call_at_once(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=5.0)) as llm,
        stack_with(base_env, tmp_path, llm) as stack,
    ):
        stack.start_worker(concurrency=8)
        client = Client()
        conv, user, agent_id = make_dm(client, settings=NOW, max_concurrent_jobs=1)
        client.post_message(conv.id, user.id, "a long one")
        wait_until(lambda: llm.stats()["in_flight"] == 1, timeout=20, what="the call")
        client.stop_agent(agent_id)
        stopped_at = time.monotonic()
        wait_until(
            lambda: llm.stats()["client_disconnects"] >= 1, timeout=10, every=0.02, what="closed"
        )
        assert time.monotonic() - stopped_at < 1.0
        (job,) = jobs_of(conv.id)
        assert job.status == "failed" and "was stopped" in (job.failure_reason or "")


def test_a_job_stopped_mid_call_can_be_retried(base_env: dict[str, str], tmp_path: Path) -> None:
    # The stop signal names the claim it stopped, not the job: a retry's claim runs. (A
    # job an interrupt cancelled is not retried: its messages went to its replacement.)
    with (
        FakeLLMServer(FakeLLMConfig(latency=2.0)) as llm,
        stack_with(base_env, tmp_path, llm) as stack,
    ):
        stack.start_worker(concurrency=8)
        stack.start_reconciler(interval=1.0)
        client = Client()
        conv, user, agent_id = make_dm(client, settings=NOW)
        client.post_message(conv.id, user.id, "first")
        wait_until(lambda: llm.stats()["in_flight"] == 1, timeout=20, what="the first call")
        client.stop_agent(agent_id)
        first = jobs_of(conv.id)[0]
        assert first.status == "failed"
        client.start_agent(agent_id)
        client.retry_job(first.id)
        wait_until(lambda: len(replies_of(conv.id)) == 1, timeout=30, what="the retried reply")
        assert client.get_job(first.id).status == "completed"
