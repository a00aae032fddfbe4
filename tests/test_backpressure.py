"""Backpressure (issue 16): a tenant with its limit's worth of messages pending (posted,
not yet answered) is refused, by `agentq.Client` with `Overloaded` and over HTTP with a
429, `Retry-After` and problem+json, and nothing is stored; other tenants post on; once
replies arrive the tenant posts again; concurrent posts near the limit overshoot it by
at most the posts in flight at once. Real PostgreSQL, Redis, workers and the API."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from agentq import errors
from agentq.cli.jobs import collect_status
from agentq.client import Client
from agentq.runtime.metrics import render
from agentq.store import tenants
from agentq.store.models import Conversation, Event, Job, Message
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from agentq.testing.stack import Stack
from tests.api_support import Server, api_server, cli_create_key, free_port
from tests.conftest import apply_env, stack_with
from tests.helpers import jobs_of, make_dm, replies_of, wait_until

LIMIT = 5
NOW = {"debounce_seconds": 0.05, "max_wait_seconds": 0.1}


@pytest.fixture(scope="module")
def stack(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, restored_env: None
) -> Iterator[tuple[Stack, Server]]:
    """Workers, the reconciler and the API on a database of the module's own, with a
    limit of LIMIT pending messages a tenant, counted again every half second."""
    tmp = tmp_path_factory.mktemp("backpressure")
    with (
        FakeLLMServer(FakeLLMConfig(latency=0.05)) as llm,
        stack_with(
            base_env,
            tmp,
            llm,
            AGENTQ_TENANT_MAX_PENDING_MESSAGES=str(LIMIT),
            AGENTQ_TENANT_PENDING_RECOUNT_SECONDS="0.5",
        ) as st,
        api_server(st.env, tmp) as server,
    ):
        st.start_worker(concurrency=8)
        st.start_reconciler(interval=1.0)
        yield st, server


@pytest.fixture
def env(stack: tuple[Stack, Server]) -> tuple[Stack, Server]:
    apply_env(stack[0].env)
    return stack


def tag() -> str:
    return uuid.uuid4().hex[:8]


def stored() -> tuple[int, int, int]:
    """(messages, events, jobs) in the database."""
    with reader() as s:
        return (
            s.scalar(select(func.count()).select_from(Message)) or 0,
            s.scalar(select(func.count()).select_from(Event)) or 0,
            s.scalar(select(func.count()).select_from(Job)) or 0,
        )


def pending_of(client: Client) -> int:
    with reader() as tx:
        return tenants.pending(tx, client.tenant_id)


def settled(client: Client, conv_id: uuid.UUID, n: int) -> bool:
    """The tenant's n posts are dispatched, into a job waiting for the paused agent: nothing
    moves until it resumes."""
    with reader() as s:
        handled = s.scalar(select(Conversation.handled_seq).where(Conversation.id == conv_id))
    return handled == n and pending_of(client) == n and bool(jobs_of(conv_id))


def test_a_tenant_at_its_limit_is_refused_whole_and_posts_again_once_answered(
    env: tuple[Stack, Server],
) -> None:
    a, b = Client(tenant=f"a-{tag()}"), Client(tenant=f"b-{tag()}")
    conv, user, agent = make_dm(a, settings=NOW)
    a.pause_agent(agent)
    for i in range(LIMIT):
        a.post_message(conv.id, user.id, f"question {i}")
    wait_until(lambda: settled(a, conv.id, LIMIT), timeout=30, what="the posts dispatched")

    before = stored()
    with pytest.raises(errors.Overloaded) as refused:
        a.post_message(conv.id, user.id, "one too many")
    assert (refused.value.limit, refused.value.pending) == (LIMIT, LIMIT)
    assert refused.value.retry_after >= 1
    assert f"its limit is {LIMIT}" in str(refused.value) and a.tenant_id
    assert stored() == before, "a refused post wrote something"

    # Visible to the operator: `agentq status` and the metric, by tenant id.
    rows = {t["id"]: t for t in collect_status()["tenants"]}
    assert (rows[str(a.tenant_id)]["pending"], rows[str(a.tenant_id)]["limit"]) == (LIMIT, LIMIT)
    body = render()[0].decode()
    assert f'agentq_tenant_pending_messages{{tenant="{a.tenant_id}"}} {LIMIT}.0' in body
    assert f'agentq_tenant_pending_limit{{tenant="{a.tenant_id}"}} {LIMIT}.0' in body

    # Another tenant is no concern of this one's limit.
    other, other_user, _ = make_dm(b, settings=NOW)
    b.post_message(other.id, other_user.id, "hello from b")
    wait_until(lambda: len(replies_of(other.id)) == 1, timeout=30, what="b's reply")

    # Replies arrive: within a recount period the tenant posts again.
    a.resume_agent(agent)
    wait_until(lambda: replies_of(conv.id) and pending_of(a) == 0, timeout=60, what="answers")
    posted = wait_until(
        lambda: _post_or_none(a, conv.id, user.id), timeout=10, what="a post admitted again"
    )
    assert not posted.duplicate
    wait_until(lambda: pending_of(a) == 0, timeout=30, what="the last post answered")


def _post_or_none(client: Client, conv_id: uuid.UUID, user_id: uuid.UUID) -> object:
    try:
        return client.post_message(conv_id, user_id, "and now?")
    except errors.Overloaded:
        return None


def test_http_answers_429_with_retry_after_and_a_tenants_own_limit(
    env: tuple[Stack, Server],
) -> None:
    stack, server = env
    name = f"http-{tag()}"
    key = cli_create_key(stack.env, name)
    subprocess.run(
        [sys.executable, "-m", "agentq.cli", "tenants", "limit", name, "3"],
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        agent = http.post("/v1/agents", json={"name": f"bot-{tag()}"}).json()
        cid = http.post("/v1/conversations", json={"kind": "dm", "settings": NOW}).json()["id"]
        http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent["id"]})
        user = http.post(f"/v1/conversations/{cid}/participants", json={"user_id": "u"}).json()
        assert http.post(f"/v1/agents/{agent['id']}/pause").status_code == 200
        url = f"/v1/conversations/{cid}/messages"
        for i in range(3):
            r = http.post(
                url,
                json={"author_id": user["id"], "content": f"q{i}"},
                headers={"Idempotency-Key": f"k{i}"},
            )
            assert r.status_code == 201, r.text
        # A replay of a stored post is answered, never refused: it writes nothing.
        again = http.post(
            url, json={"author_id": user["id"], "content": "q0"}, headers={"Idempotency-Key": "k0"}
        )
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"

        wait_until(lambda: settled(Client(tenant=name), uuid.UUID(cid), 3), what="dispatched")
        before = stored()
        r = http.post(url, json={"author_id": user["id"], "content": "one too many"})
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == 429 and problem["type"].endswith("too_many_pending_messages")
        assert "its limit is 3" in problem["detail"] and name in problem["detail"]
        assert stored() == before, "a refused post wrote something"

        http.post(f"/v1/agents/{agent['id']}/resume")
        wait_until(
            lambda: (
                http.post(url, json={"author_id": user["id"], "content": "later"}).status_code
                == 201
            ),
            timeout=60,
            every=0.5,
            what="a post admitted once the replies arrived",
        )


def test_concurrent_posts_near_the_limit_overshoot_by_at_most_the_posts_in_flight(
    env: tuple[Stack, Server],
) -> None:
    threads = 8
    client = Client(tenant=f"race-{tag()}")
    dms = [make_dm(client, settings=NOW) for _ in range(threads)]
    for _, _, agent in dms:
        client.pause_agent(agent)
    barrier = threading.Barrier(threads)
    stop = threading.Event()

    def post(i: int, tries: int | None) -> int:
        """Post until `tries` are done (or, with None, until stopped); how many went in."""
        conv, user, _ = dms[i]
        barrier.wait()
        admitted = n = 0
        while (n < tries) if tries is not None else not stop.is_set():
            n += 1
            try:
                client.post_message(conv.id, user.id, f"burst {n}")
                admitted += 1
            except errors.Overloaded:
                pass
        return admitted

    # All at once into the tenant's first counting, nothing answered meanwhile.
    with ThreadPoolExecutor(threads) as pool:
        admitted = sum(pool.map(post, range(threads), [5] * threads))
    print(f"figure: {threads} threads racing the first counting, limit {LIMIT}: {admitted} in")
    assert pending_of(client) == admitted
    assert LIMIT <= admitted <= LIMIT + threads

    # Then for 3 s while replies drain the backlog and countings keep taking place.
    for _, _, agent in dms:
        client.resume_agent(agent)
    most = 0
    with ThreadPoolExecutor(threads) as pool:
        running = [pool.submit(post, i, None) for i in range(threads)]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            most = max(most, pending_of(client))
        stop.set()
        admitted = sum(f.result() for f in running)
    print(f"figure: then 3 s of {threads} threads posting: {admitted} in, at most {most} pending")
    assert admitted > LIMIT, "replies never made room"
    assert most <= LIMIT + threads
    wait_until(lambda: pending_of(client) == 0, timeout=60, what="the burst answered")


def test_no_limit_and_bad_limits(env: tuple[Stack, Server]) -> None:
    from agentq.ops.tenants import set_pending_limit

    client = Client(tenant=f"free-{tag()}")
    conv, user, agent = make_dm(client, settings=NOW)
    client.pause_agent(agent)
    set_pending_limit(client.tenant, 0)  # no limit for this one
    for i in range(LIMIT + 3):
        client.post_message(conv.id, user.id, f"m{i}")
    with pytest.raises(errors.InvalidInput, match="limit"):
        set_pending_limit(client.tenant, -1)
    with pytest.raises(errors.TenantNotFound):
        set_pending_limit(f"nobody-{tag()}", 3)
    set_pending_limit(client.tenant, None)  # back to the setting: over it now
    with pytest.raises(errors.Overloaded):
        client.post_message(conv.id, user.id, "over")
    client.resume_agent(agent)
    wait_until(lambda: pending_of(client) == 0, timeout=60, what="answers")


def test_with_redis_unreachable_the_database_count_decides(env: tuple[Stack, Server]) -> None:
    client = Client(tenant=f"dark-{tag()}")
    conv, user, agent = make_dm(client, settings=NOW)
    client.pause_agent(agent)
    for i in range(LIMIT):
        client.post_message(conv.id, user.id, f"m{i}")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    apply_env({**env[0].env, "AGENTQ_REDIS_URL": dead})
    try:
        with pytest.raises(errors.Overloaded) as refused:
            client.post_message(conv.id, user.id, "over, and Redis is gone")
        assert refused.value.pending == LIMIT
    finally:
        apply_env(env[0].env)
    client.resume_agent(agent)
    wait_until(lambda: pending_of(client) == 0, timeout=60, what="answers")
