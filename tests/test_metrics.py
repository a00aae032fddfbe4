"""Metrics: a worker's /metrics and the API registry agree with the database after a run."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from agentq.runtime import metrics
from agentq.store.models import Agent, Job, Message
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.helpers import count, make_dm, wait_until
from tests.profile_support import declare_profile

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(
    data: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, ls), v in data.items()
        if n == name and all((k, val) in ls for k, val in labels.items())
    )


@pytest.fixture
def broken_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(FakeLLMConfig(latency=0.01, error_rate=1.0)) as server:
        yield server


def test_worker_and_api_metrics_match_the_database(isolated, broken_llm) -> None:  # noqa: ANN001
    port = free_port()
    isolated.stack.env["AGENTQ_METRICS_PORT"] = str(port)
    isolated.stack.start_worker(concurrency=8)
    client = isolated.client
    before = samples(metrics.render(state=False)[0].decode())

    # Two healthy conversations (one a burst of three messages answered once) and one
    # whose provider always fails.
    conv1, user1, _ = make_dm(client)
    conv2, user2, _ = make_dm(client, settings={"debounce_seconds": 1.0, "max_wait_seconds": 3})
    conv3, user3, _ = make_dm(client, model_config={"profile": declare_profile(broken_llm.url)})
    client.ask(conv1.id, user1.id, "hello there", timeout=30)
    posted = [client.post_message(conv2.id, user2.id, f"part {i}") for i in range(3)]
    client.wait_for_reply(posted[-1].id, timeout=30)
    client.post_message(conv3.id, user3.id, "anyone?")
    wait_until(
        lambda: count(Job, Job.conversation_id == conv3.id, Job.status == "failed") == 1,
        timeout=60,
        what="the failing job",
    )

    completed = count(Job, Job.status == "completed")
    failed = count(Job, Job.status == "failed")
    assert (completed, failed) == (2, 1)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    # The failure event is committed before the worker's handler counts it: poll briefly.
    worker = wait_until(
        lambda: (
            (d := scrape()) and total(d, "agentq_jobs_finished_total", status="failed") == 1 and d
        ),
        timeout=10,
        what="worker metrics",
    )
    assert total(worker, "agentq_jobs_finished_total", status="completed") == completed
    assert total(worker, "agentq_jobs_finished_total", status="failed") == failed
    assert total(worker, "agentq_job_duration_seconds_count") == completed
    assert total(worker, "agentq_job_queue_wait_seconds_count") == completed + failed
    assert total(worker, "agentq_responses_total") == completed
    assert total(worker, "agentq_response_time_seconds_count") == completed
    # the failing agent: every request answered 500, retried, the job retried
    errors = total(worker, "agentq_llm_errors_total", provider="openai", status="500")
    assert errors == broken_llm.stats()["requests"] > 0
    assert total(worker, "agentq_llm_requests_total", provider="openai", status="ok") == completed
    assert total(worker, "agentq_llm_retries_total", provider="openai") > 0
    assert total(worker, "agentq_job_retries_total") >= 1
    assert total(worker, "agentq_llm_request_duration_seconds_count") == errors + completed
    # three messages in one batch: two coalesced
    assert total(worker, "agentq_debounce_coalesced_messages_total") >= 2
    assert total(worker, "agentq_debounce_batches_total") >= 3
    assert total(worker, "agentq_events_published_total", type="job.completed") == completed

    # The API's registry: this process's counters plus the state read from DB and Redis.
    api = samples(metrics.render()[0].decode())
    for status in ("completed", "failed", "waiting", "active"):
        assert total(api, "agentq_jobs", status=status) == count(Job, Job.status == status)
    assert total(api, "agentq_queued_jobs") == count(Job, Job.status.in_(("waiting", "delayed")))
    assert set(dict(ls)["queue"] for n, ls in api if n == "agentq_queue_depth") == {
        "agentq.control",
        "agentq.llm",
    }
    assert total(api, "agentq_active_conversations") == 3
    with reader() as s:
        per_agent = s.execute(select(Agent.id, Agent.name, Agent.total_responses)).all()
        messages = s.scalar(select(func.count()).select_from(Message)) or 0
    for agent_id, name, n in per_agent:  # by id: names are tenants' words
        assert total(api, "agentq_agent_responses_total", agent=str(agent_id)) == n
        assert total(api, "agentq_agent_active_jobs", agent=str(agent_id)) == 0
        assert total(api, "agentq_agent_responses_total", agent=name) == 0
    assert total(api, "agentq_messages_last_minute") == messages
    assert total(api, "agentq_state_up") == 1
    # user messages were created in this process: counted here, once each
    users = count(Message, Message.role == "user")
    assert (
        total(api, "agentq_messages_total", role="user")
        - total(before, "agentq_messages_total", role="user")
    ) == users


def test_state_collector_answers_without_a_database(db) -> None:  # noqa: ANN001
    """A scrape never fails: with the state unavailable it says so in agentq_state_up."""
    import os

    from agentq.config import reset_settings
    from agentq.store.session import dispose_engines

    old = os.environ["AGENTQ_DATABASE_URL"]
    os.environ["AGENTQ_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    reset_settings()
    dispose_engines()
    try:
        data = samples(metrics.render()[0].decode())
    finally:
        os.environ["AGENTQ_DATABASE_URL"] = old
        reset_settings()
        dispose_engines()
    assert total(data, "agentq_state_up") == 0


def test_llm_request_counts_status_codes() -> None:
    from agentq.errors import ProviderError

    before = metrics.LLM_ERRORS.labels("unit", "503")._value.get()
    with pytest.raises(ProviderError), metrics.llm_request("unit"):
        raise ProviderError("busy", retryable=True, status_code=503)
    with metrics.llm_request("unit"):
        pass
    assert metrics.LLM_ERRORS.labels("unit", "503")._value.get() == before + 1
    assert metrics.LLM_REQUESTS.labels("unit", "ok")._value.get() >= 1
