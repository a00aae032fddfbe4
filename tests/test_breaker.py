"""The circuit breaker per model profile: its states in real Redis, and a provider outage
under load with real workers, PostgreSQL and the fake LLM over HTTP: no job fails, none
spends an attempt while the circuit is open, all are answered in order once it is back,
and the operator sees the circuit open and close (metric, log, events)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agentq.cli.jobs import collect_status
from agentq.client import Client
from agentq.errors import ProviderError
from agentq.ops import tenancy
from agentq.ops.keys import Principal
from agentq.providers import ChatMessage, ChatRequest, acall_with_retries, get_provider
from agentq.runtime import breaker, metrics
from agentq.runtime.embedded import free_port
from agentq.store.models import Event
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMServer
from agentq.testing.stack import use_env
from tests.conftest import stack_with
from tests.helpers import events_of, jobs_of, make_dm, replies_of, trigger_links, wait_until

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}
#: a breaker quick enough to test: 3 failures open it for 1 s (2 s after a failed probe)
QUICK = {
    "AGENTQ_BREAKER_FAILURES": "3",
    "AGENTQ_BREAKER_OPEN_SECONDS": "1",
    "AGENTQ_BREAKER_OPEN_MAX_SECONDS": "4",
    "AGENTQ_BREAKER_PROBE_SECONDS": "10",
}

DOWN = ProviderError("openai: HTTP 503: overloaded", retryable=True, status_code=503)
REFUSED = ProviderError("openai: request failed (ConnectError: refused)", retryable=True)
LIMITED = ProviderError("openai: HTTP 429", retryable=True, status_code=429, retry_after=1)


def _operator_events(profile: str) -> list[Event]:
    with reader() as s:
        query = select(Event).where(Event.type.like("provider.circuit_%")).order_by(Event.id)
        rows = s.scalars(query)
        return [e for e in rows if e.payload.get("profile") == profile]


def _tenant_feed_types(tenant_id: uuid.UUID) -> set[str]:
    who = Principal(key_id=uuid.uuid4(), tenant_id=tenant_id)
    types: set[str] = set()
    after = None
    while True:
        records, after = tenancy.read_feed(who, after=after, limit=500)
        if not records:
            return types
        types |= {r["type"] for r in records}


# -- its states, against real Redis -------------------------------------------------------


@pytest.fixture
def quick(db: str, restored_env: None) -> str:
    use_env(QUICK)
    return f"p{uuid.uuid4().hex[:8]}"


def test_opens_after_n_provider_down_failures_in_a_row(quick: str) -> None:
    profile, job, conv = quick, uuid.uuid4(), uuid.uuid4()
    assert breaker.record(profile, DOWN) and breaker.record(profile, REFUSED)
    assert breaker.record(profile, None)  # an answer ends the streak
    assert breaker.record(profile, DOWN) and breaker.record(profile, DOWN)
    # Rate limiting and a request's own fault say the provider is up: they end it too.
    assert breaker.record(profile, LIMITED)
    assert breaker.record(profile, ProviderError("HTTP 400", retryable=False, status_code=400))
    assert breaker.admit(profile, job, conv) == breaker.Admission()
    assert breaker.record(profile, DOWN) and breaker.record(profile, DOWN)
    assert breaker.record(profile, DOWN) is False  # the third in a row opened it
    held = breaker.admit(profile, job, conv)
    assert held.wait is not None and 0 < held.wait <= 1.0 and not held.probe
    assert breaker.states([profile])[profile].state == breaker.OPEN
    assert breaker.record(profile, DOWN) is False  # a call in flight stops retrying
    (opened,) = _operator_events(profile)
    assert opened.type == "provider.circuit_opened" and opened.conversation_id is None
    assert metrics.CIRCUIT_TRANSITIONS.labels(profile, "open")._value.get() == 1


def test_half_open_admits_exactly_one_probe_then_closes_on_its_answer(quick: str) -> None:
    profile = quick
    for _ in range(3):
        breaker.record(profile, DOWN)
    wait_until(
        lambda: breaker.states([profile])[profile].state == breaker.HALF_OPEN,
        timeout=10,
        what="the circuit to half-open",
    )
    callers = 24
    admitted: list[breaker.Admission] = []
    start = threading.Barrier(callers)

    def ask() -> None:
        start.wait()
        admitted.append(breaker.admit(profile, uuid.uuid4(), uuid.uuid4()))

    threads = [threading.Thread(target=ask) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    probes = [a for a in admitted if a.probe]
    assert len(probes) == 1 and probes[0].wait is None
    assert all(a.wait is not None and a.wait > 0 for a in admitted if not a.probe)
    assert breaker.record(profile, None)  # the probe's answer closes it
    assert breaker.states([profile])[profile].state == breaker.CLOSED
    assert breaker.admit(profile, uuid.uuid4(), uuid.uuid4()) == breaker.Admission()
    opened, closed = _operator_events(profile)
    assert closed.type == "provider.circuit_closed" and closed.conversation_id is None
    assert closed.payload["woken"] == 0  # (none of those jobs exists)
    # Operator events: no tenant's feed hands them out.
    types = _tenant_feed_types(Client().tenant_id)
    assert not {t for t in types if t.startswith("provider.")}


def test_a_failed_probe_opens_it_again_for_longer(quick: str) -> None:
    profile = quick
    for _ in range(3):
        breaker.record(profile, DOWN)
    wait_until(
        lambda: breaker.admit(profile, uuid.uuid4(), uuid.uuid4()).probe,
        timeout=10,
        what="the probe",
    )
    assert breaker.record(profile, REFUSED) is False
    state = breaker.states([profile])[profile]
    assert state.state == breaker.OPEN and state.retry_in > 1.0  # 2 s: twice the first
    assert [e.payload["reopened"] for e in _operator_events(profile)] == [False, True]


def test_a_call_in_flight_stops_retrying_when_the_circuit_opens(quick: str) -> None:
    with FakeLLMServer(latency=0.0, error_rate=1.0) as llm:
        request = ChatRequest([ChatMessage("user", "hello")], model="m", endpoint=llm.url)

        async def guarded() -> None:
            with breaker.guarding(quick):  # as run_job does, inside the call's task
                await acall_with_retries(
                    get_provider("openai"),
                    request,
                    max_retries=8,
                    backoff_base=0.01,
                    backoff_max=0.01,
                )

        with pytest.raises(ProviderError, match="500"):
            asyncio.run(guarded())
        # The third 500 in a row opened the circuit: no fourth request of the nine allowed.
        assert llm.stats()["requests"] == 3
    assert breaker.states([quick])[quick].state == breaker.OPEN


# -- a provider outage under load ------------------------------------------------------


def _scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def _circuit_gauge() -> dict[str, float]:
    (family,) = list(metrics.CircuitCollector().collect())
    return {s.labels["profile"]: s.value for s in family.samples}


@pytest.mark.integration
def test_a_provider_down_holds_its_jobs_and_answers_them_in_order_when_back(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    llm = FakeLLMServer(latency=0.05, port=port).start()
    metrics_port = free_port()
    env: dict[str, Any] = {
        **QUICK,
        "LLM_MAX_RETRIES": "2",
        "AGENTQ_METRICS_PORT": str(metrics_port),
    }
    try:
        with stack_with(base_env, tmp_path, llm, **env) as stack:
            stack.start_worker(concurrency=16)
            stack.start_reconciler(interval=1.0)
            client = Client()
            dms = [make_dm(client, settings=NOW) for _ in range(8)]
            for conv, user, _ in dms:
                client.post_message(conv.id, user.id, "before the outage")
            wait_until(lambda: all(replies_of(c.id) for c, _, _ in dms), 60, what="replies")

            llm.stop()  # connection refused from now on
            for conv, user, _ in dms:
                client.post_message(conv.id, user.id, "during the outage")
                client.post_message(conv.id, user.id, "and once more")
            wait_until(lambda: _circuit_gauge().get("default") == 1, 30, what="it to open")
            assert collect_status()["circuits"]["default"]["state"] in ("open", "half_open")
            # Down long enough for a probe to fail and open it again.
            wait_until(
                lambda: any(e.payload["reopened"] for e in _operator_events("default")),
                timeout=30,
                what="a failed probe",
            )
            wait_until(
                lambda: [j for c, _, _ in dms for j in jobs_of(c.id) if j.status == "delayed"],
                timeout=30,
                what="jobs waiting while the circuit is open",
            )

            llm = FakeLLMServer(latency=0.05, port=port).start()
            wait_until(
                lambda: (
                    all(len(replies_of(c.id)) >= 2 for c, _, _ in dms)
                    and all(
                        j.status in ("completed", "failed")
                        for c, _, _ in dms
                        for j in jobs_of(c.id)
                    )
                ),
                timeout=60,
                what="every job answered after the outage",
            )
            assert _circuit_gauge().get("default") == 0
            _check_outage(dms, port, _scrape(metrics_port), tmp_path / "logs" / "worker1.log")
    finally:
        llm.stop()


def _check_outage(dms: list[Any], port: int, scraped: str, log: Path) -> None:
    jobs = [j for c, _, _ in dms for j in jobs_of(c.id)]
    assert [j.status for j in jobs if j.status != "completed"] == []  # none failed
    # Answered once each; failures charged only before the circuit opened (fewer than 3).
    outage = [j for c, _, _ in dms for j in jobs_of(c.id)[1:]]
    spent = sum(j.attempts - 1 for j in outage)
    print(f"figure: {len(outage)} jobs through the outage, {spent} attempts spent on failures")
    assert spent < 3
    for conv, _, _ in dms:
        # In order: every reply after the messages it answers, in the order of its job.
        replies = {r.reply_to_job_id: r.seq for r in replies_of(conv.id)}
        seqs = [replies[j.id] for j in jobs_of(conv.id)]
        assert seqs == sorted(seqs)
        assert all(replies[j.id] > max(trigger_links(j.id)) for j in jobs_of(conv.id))
    waiting = [
        e.payload
        for c, _, _ in dms
        for e in events_of(c.id, "status.engine")
        if e.payload["data"].get("reason") == "circuit_open"
    ]
    assert waiting and all(p["data"]["profile"] == "default" for p in waiting)
    assert str(port) not in json.dumps(waiting)  # no endpoint reaches a conversation
    kinds = [e.type for e in _operator_events("default")]
    assert kinds[0] == "provider.circuit_opened" and kinds[-1] == "provider.circuit_closed"
    assert 'agentq_circuit_transitions_total{profile="default",state="open"}' in scraped
    assert 'agentq_circuit_transitions_total{profile="default",state="closed"}' in scraped
    text = log.read_text()
    assert "circuit of model profile default opened" in text
    assert "circuit of model profile default closed" in text
