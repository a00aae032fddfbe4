"""Provider failures: Retry-After is honoured; spent attempts fail the job visibly."""

from __future__ import annotations

import pytest

from agentq.store.models import Agent, Message
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMServer
from tests.conftest import Live
from tests.helpers import events_of, jobs_of, make_dm, replies_of, wait_until
from tests.profile_support import declare_profile

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


@pytest.mark.integration
def test_429_with_retry_after_then_200_succeeds_after_the_wait(live: Live) -> None:
    with FakeLLMServer(latency=0.01, retry_after=1) as llm:
        llm.control(script=[429, 200])
        conv, user, _ = make_dm(
            live.client, settings=NOW, model_config={"profile": declare_profile(llm.url)}
        )
        live.client.post_message(conv.id, user.id, "are you there?")
        wait_until(lambda: replies_of(conv.id), timeout=20, what="the reply")
        stats = llm.stats()
        assert stats["by_status"] == {"429": 1, "200": 1}
        first, second = stats["arrivals"][-2:]
        assert second - first >= 1.0  # the Retry-After: 1 was honoured
        (job,) = jobs_of(conv.id)
        assert job.status == "completed" and job.attempts == 1
        assert job.result["requests"] == 2


@pytest.mark.integration
def test_provider_always_500_fails_the_job_visibly(live: Live) -> None:
    with FakeLLMServer(latency=0.01, error_rate=1.0) as llm:
        conv, user, agent_id = make_dm(
            live.client, settings=NOW, model_config={"profile": declare_profile(llm.url)}
        )
        live.client.post_message(conv.id, user.id, "hello?")
        jobs = wait_until(
            lambda: [j for j in jobs_of(conv.id) if j.status == "failed"],
            timeout=40,
            what="the job to fail",
        )
        job = jobs[0]
        assert job.attempts == job.max_attempts == 3
        assert "500" in job.failure_reason
        # Each attempt retried the transient 500 inside the call first (LLM_MAX_RETRIES=3).
        assert llm.stats()["requests"] == 3 * 4
        with reader() as s:
            notes = [
                m.content
                for m in s.query(Message).filter(
                    Message.conversation_id == conv.id, Message.role == "system"
                )
            ]
            agent = s.get(Agent, agent_id)
        assert notes == [f"{agent.name} could not respond: {job.failure_reason}"]
        assert agent.status == "active"
        (failed,) = events_of(conv.id, "job.failed")
        assert failed.payload["job_id"] == str(job.id) and failed.payload["reason"]
        assert replies_of(conv.id) == []


@pytest.mark.integration
def test_client_error_is_not_retried(live: Live) -> None:
    with FakeLLMServer(latency=0.01) as llm:
        llm.control(script=[400])
        conv, user, _ = make_dm(
            live.client, settings=NOW, model_config={"profile": declare_profile(llm.url)}
        )
        live.client.post_message(conv.id, user.id, "bad request please")
        wait_until(lambda: [j for j in jobs_of(conv.id) if j.status == "failed"], timeout=20)
        assert llm.stats()["requests"] == 1
