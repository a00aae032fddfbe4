"""The HTTP API, driven over real HTTP against `agentq api` in its own process, on the
live stack (PostgreSQL, Redis, two Celery workers, the reconciler, the fake LLM)."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from agentq import status
from agentq.ops.keys import create_key
from agentq.runtime import bus
from tests.api_support import Server, api_server, cli_create_key
from tests.conftest import Live, apply_env
from tests.helpers import events_of, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(live_stack: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_server(live_stack.env, tmp_path_factory.mktemp("api")) as srv:
        yield srv


@dataclass
class Keys:
    a: str
    b: str


@pytest.fixture(scope="module")
def keys(live_stack: Live) -> Keys:
    """Two tenants' keys: one made by the CLI (as an operator would), one in-process."""
    a = cli_create_key(live_stack.env)
    apply_env(live_stack.env)
    b, _ = create_key(f"tenant-b-{uuid.uuid4().hex[:6]}")
    return Keys(a, b)


def api(server: Server, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


@dataclass
class Dm:
    conversation_id: str
    user_id: str
    agent_id: str


def make_dm(http: httpx.Client) -> Dm:
    agent = http.post("/v1/agents", json={"name": f"bot-{uuid.uuid4().hex[:8]}", "role": "helper"})
    assert agent.status_code == 201, agent.text
    conv = http.post("/v1/conversations", json={"kind": "dm", "title": "t"})
    assert conv.status_code == 201, conv.text
    cid = conv.json()["id"]
    p = http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent.json()["id"]})
    assert p.status_code == 201, p.text
    user = http.post(f"/v1/conversations/{cid}/participants", json={"user_id": "u1"})
    assert user.status_code == 201, user.text
    return Dm(cid, user.json()["id"], agent.json()["id"])


@dataclass
class SSE:
    """An SSE client in a thread: events land in `events` as dicts (id, event, data)."""

    url: str
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    _q: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SSE:
        threading.Thread(target=self._run, daemon=True).start()
        assert self._ready.wait(15), "stream did not open"
        return self

    def _run(self) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(5, read=30)) as c,
                c.stream("GET", self.url, headers=self.headers) as r,
            ):
                self.status = r.status_code
                if r.status_code != 200:
                    r.read()
                    self._ready.set()
                    return
                current: dict[str, Any] = {}
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(": connected"):
                        self._ready.set()
                    elif line == "":
                        if "data" in current:
                            current["data"] = json.loads(current["data"])
                            self._q.put(current)
                        current = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        current[name] = value
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                got = [e.get("event") for e in self.events]
                raise AssertionError(f"no matching event; got {got}")
            try:
                ev = self._q.get(timeout=left)
            except queue.Empty:
                continue
            self.events.append(ev)
            if pred(ev):
                return ev

    def close(self) -> None:
        self._stop.set()


def stream_url(server: Server, cid: str, query: str = "") -> str:
    return f"{server.url}/v1/conversations/{cid}/stream{query}"


# --- producing and waiting ---------------------------------------------------------------


def test_post_with_wait_returns_the_reply(server: Server, keys: Keys) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        r = http.post(
            f"/v1/conversations/{dm.conversation_id}/messages?wait=30",
            json={"author_id": dm.user_id, "content": "hello there"},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["message"]["seq"] == 1 and body["message"]["content"] == "hello there"
        assert body["reply"]["role"] == "assistant" and body["reply"]["content"]
        assert body["job_status"] == "completed" and body["job_id"]

        page = http.get(
            f"/v1/conversations/{dm.conversation_id}/messages", params={"after_seq": 0, "limit": 1}
        ).json()
        assert [m["seq"] for m in page["items"]] == [1] and page["next_after_seq"] == 1
        rest = http.get(
            f"/v1/conversations/{dm.conversation_id}/messages", params={"after_seq": 1}
        ).json()
        assert [m["role"] for m in rest["items"]] == ["assistant"]
        assert rest["next_after_seq"] is None

        job = http.get(f"/v1/jobs/{body['job_id']}").json()
        assert job["status"] == "completed" and job["reply"]["id"] == body["reply"]["id"]
        listed = http.get(
            "/v1/jobs", params={"status": "completed", "conversation_id": dm.conversation_id}
        ).json()
        assert [j["id"] for j in listed["items"]] == [body["job_id"]]
        again = http.post(f"/v1/jobs/{body['job_id']}/retry")
        assert again.status_code == 409 and again.json()["status"] == 409

        assert http.post(f"/v1/agents/{dm.agent_id}/pause").json()["status"] == "paused"
        assert http.post(f"/v1/agents/{dm.agent_id}/resume").json()["status"] == "active"
        assert http.post(f"/v1/agents/{dm.agent_id}/stop").json()["status"] == "inactive"
        assert http.post(f"/v1/agents/{dm.agent_id}/start").json()["status"] == "active"
        health = http.get(f"/v1/agents/{dm.agent_id}/health").json()
        assert health["ok"] is True and health["latency_ms"] >= 0


def test_wait_that_times_out_answers_202_and_the_reply_still_comes(
    server: Server, keys: Keys
) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        # the debounce alone (0.2 s in the tests) is longer than this wait
        r = http.post(
            f"/v1/conversations/{dm.conversation_id}/messages?wait=0.01",
            json={"author_id": dm.user_id, "content": "are you there?"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["reply"] is None
        wait_until(
            lambda: http.get(
                "/v1/jobs", params={"conversation_id": dm.conversation_id, "status": "completed"}
            ).json()["items"],
            what="the job to complete",
        )


# --- tenancy and auth ----------------------------------------------------------------------


def test_requests_without_a_valid_key_get_401(server: Server) -> None:
    for key in (None, "aq_not-a-real-key", "nonsense"):
        with api(server, key) as http:
            r = http.get("/v1/agents")
            assert r.status_code == 401
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 401


def test_another_tenants_ids_answer_404(server: Server, keys: Keys) -> None:
    with api(server, keys.a) as a, api(server, keys.b) as b:
        dm = make_dm(a)
        posted = a.post(
            f"/v1/conversations/{dm.conversation_id}/messages?wait=30",
            json={"author_id": dm.user_id, "content": "mine"},
        ).json()
        cid = dm.conversation_id
        for path in (
            f"/v1/conversations/{cid}",
            f"/v1/conversations/{cid}/messages",
            f"/v1/conversations/{cid}/participants",
            f"/v1/agents/{dm.agent_id}",
            f"/v1/jobs/{posted['job_id']}",
        ):
            r = b.get(path)
            assert r.status_code == 404, path
            assert r.json()["type"].endswith("not_found")
        assert (
            b.post(
                f"/v1/conversations/{cid}/messages", json={"author_id": dm.user_id, "content": "x"}
            ).status_code
            == 404
        )
        assert b.post(f"/v1/jobs/{posted['job_id']}/retry").status_code == 404
        # B cannot pull A's agent into its own conversation either
        conv_b = b.post("/v1/conversations", json={"kind": "dm"}).json()
        r = b.post(f"/v1/conversations/{conv_b['id']}/participants", json={"agent_id": dm.agent_id})
        assert r.status_code == 404
        assert dm.agent_id not in {x["id"] for x in b.get("/v1/agents").json()}
        assert b.post(f"/v1/agents/{dm.agent_id}/pause").status_code == 404
        assert cid not in {c["id"] for c in b.get("/v1/conversations").json()}
        assert b.get("/v1/jobs", params={"conversation_id": cid}).json()["items"] == []
        feed = b.get("/v1/events", params={"limit": 500}).json()
        assert all(e["conversation_id"] != cid for e in feed["items"])
        assert all(e["payload"].get("agent_id") != dm.agent_id for e in feed["items"])

        sse = SSE(stream_url(server, cid), {"Authorization": f"Bearer {keys.b}"}).start()
        assert sse.status == 404 and sse.events == []


# --- idempotency ---------------------------------------------------------------------------


def test_same_post_retried_five_times_concurrently_makes_one_message(
    server: Server, keys: Keys
) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        url = f"/v1/conversations/{dm.conversation_id}/messages"
        body = {"author_id": dm.user_id, "content": "pay 10 EUR"}
        headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(lambda _: http.post(url, json=body, headers=headers), range(5)))
        assert [r.status_code for r in answers] == [201] * 5, [r.text for r in answers]
        ids = {r.json()["message"]["id"] for r in answers}
        assert len(ids) == 1
        assert sum(r.json()["duplicate"] for r in answers) == 4
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 4
        users = [m for m in http.get(url).json()["items"] if m["role"] == "user"]
        assert len(users) == 1

        other = http.post(url, json={**body, "content": "pay 1000 EUR"}, headers=headers)
        assert other.status_code == 422
        assert other.json()["field"] == "Idempotency-Key"
        assert "different body" in other.json()["detail"]


# --- errors --------------------------------------------------------------------------------


def test_bad_input_is_answered_as_problem_details_naming_the_field(
    server: Server, keys: Keys
) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        url = f"/v1/conversations/{dm.conversation_id}/messages"
        cases = [
            ({"author_id": dm.user_id}, 422, "content"),
            ({"author_id": "nope", "content": "x"}, 422, "author_id"),
            ({"author_id": dm.user_id, "content": "   "}, 422, "content"),
            ({"author_id": dm.user_id, "content": "x" * 32_001}, 422, "content"),
            ({"author_id": dm.user_id, "content": "a\x00b"}, 422, "content"),
            ({"author_id": str(uuid.uuid4()), "content": "x"}, 422, "author_id"),
        ]
        for body, code, fld in cases:
            r = http.post(url, json=body)
            assert r.status_code == code, (body, r.text)
            problem = r.json()
            assert set(problem) == {"type", "title", "status", "detail", "field"}
            assert problem["status"] == code and problem["field"] == fld, problem
        big = http.post(
            url,
            content=b'{"content": "' + b"x" * 2_000_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413 and big.json()["field"] == "body"
        r = http.post("/v1/conversations", json={"kind": "dm", "settings": {"bogus": 1}})
        assert r.status_code == 422 and r.json()["field"] == "settings.bogus"
        r = http.post("/v1/agents", json={"name": "two words"})
        assert r.status_code == 422 and r.json()["field"] == "name"
        assert http.get(f"/v1/conversations/{uuid.uuid4()}").status_code == 404
        assert http.get("/v1/conversations/not-a-uuid").json()["field"] == "conversation_id"


# --- the event feed and the live stream ------------------------------------------------------


def test_event_feed_is_replayable_from_any_point(server: Server, keys: Keys) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        http.post(
            f"/v1/conversations/{dm.conversation_id}/messages?wait=30",
            json={"author_id": dm.user_id, "content": "log this"},
        )
        mine: list[dict[str, Any]] = []
        after = "0"
        while True:
            page = http.get("/v1/events", params={"after": after, "limit": 200}).json()
            mine += [e for e in page["items"] if e["conversation_id"] == dm.conversation_id]
            if page["next_after"] == after:
                break
            after = page["next_after"]
        types = [e["type"] for e in mine]
        assert (
            types.index("message.created")
            < types.index("agent.responding")
            < types.index("agent.responded")
        )
        middle = mine[1]["cursor"]
        again = http.get("/v1/events", params={"after": middle, "limit": 500}).json()["items"]
        assert [e["id"] for e in again if e["conversation_id"] == dm.conversation_id] == [
            e["id"] for e in mine[2:]
        ]
        bad = http.get("/v1/events", params={"after": mine[1]["id"]})
        assert bad.status_code == 422 and bad.json()["field"] == "after"


def test_stream_shows_responding_then_the_reply(server: Server, keys: Keys) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        sse = SSE(
            stream_url(server, dm.conversation_id), {"Authorization": f"Bearer {keys.a}"}
        ).start()
        try:
            http.post(
                f"/v1/conversations/{dm.conversation_id}/messages",
                json={"author_id": dm.user_id, "content": "stream me"},
            )
            sse.wait_for(lambda e: e["event"] == "agent.responded")
        finally:
            sse.close()
        kinds = [e["event"] for e in sse.events]
        assert (
            kinds.index("message.created")
            < kinds.index("agent.responding")
            < kinds.index("agent.responded")
        )
        assert all(e.get("id") for e in sse.events)


def test_reconnecting_with_last_event_id_misses_nothing(
    server: Server, keys: Keys, live: Live
) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        auth = {"Authorization": f"Bearer {keys.a}"}
        first = SSE(stream_url(server, dm.conversation_id), auth).start()
        http.post(
            f"/v1/conversations/{dm.conversation_id}/messages",
            json={"author_id": dm.user_id, "content": "one"},
        )
        seen = first.wait_for(lambda e: e["event"] == "message.created")
        first.close()
        # while nobody listens, the job runs and a second message is answered
        two = http.post(
            f"/v1/conversations/{dm.conversation_id}/messages?wait=30",
            json={"author_id": dm.user_id, "content": "two"},
        )
        assert two.json()["reply"]
        jobs_url = f"/v1/jobs?conversation_id={dm.conversation_id}"
        wait_until(
            lambda: all(j["status"] == "completed" for j in http.get(jobs_url).json()["items"]),
            what="the jobs",
        )
        cid = uuid.UUID(dm.conversation_id)
        # the SSE id is the stream's place in commit order: resuming there replays, in
        # commit order and once each, every stored event after it
        # (an event shows once every transaction on the server older than its own ended)
        resume = seen["id"]
        stored = {e.id for e in events_of(cid) if e.id > seen["data"]["id"]}

        def replayable() -> list[int]:
            page = bus.read_feed(after=resume, limit=10_000, conversation_id=cid)
            ids = [r["id"] for r in page]
            return ids if stored <= set(ids) else []

        expected = wait_until(replayable, what="the stored events in the feed")
        second = SSE(
            stream_url(server, dm.conversation_id), {**auth, "Last-Event-ID": resume}
        ).start()
        try:
            second.wait_for(lambda e: e["data"]["id"] == expected[-1])
        finally:
            second.close()
        assert [e["data"].get("id") for e in second.events] == expected
        bad = httpx.get(
            stream_url(server, dm.conversation_id),
            headers={**auth, "Last-Event-ID": str(seen["data"]["id"])},
            timeout=10,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "Last-Event-ID"


def test_stream_category_filter_keeps_only_those_status_categories(
    server: Server, keys: Keys, live: Live
) -> None:
    with api(server, keys.a) as http:
        dm = make_dm(http)
        auth = {"Authorization": f"Bearer {keys.a}"}
        only = SSE(stream_url(server, dm.conversation_id, "?categories=progress"), auth).start()
        every = SSE(stream_url(server, dm.conversation_id), auth).start()
        try:
            status.tool(dm.conversation_id, "searching", tool="web")
            status.progress(dm.conversation_id, "half way", done=1, total=2)
            got = only.wait_for(lambda e: e["event"].startswith("status."))
            every.wait_for(lambda e: e["event"] == "status.progress")
        finally:
            only.close()
            every.close()
        assert got["event"] == "status.progress"
        assert got["data"]["payload"] == {
            "category": "progress",
            "message": "half way",
            "data": {"done": 1, "total": 2},
        }
        assert "id" not in got  # live status is not stored
        assert [e["event"] for e in every.events] == ["status.tool", "status.progress"]
        r = http.get(f"/v1/conversations/{dm.conversation_id}/stream?categories=bogus")
        assert r.status_code == 422 and r.json()["field"] == "categories"


# --- system routes ---------------------------------------------------------------------------


def test_health_readiness_metrics_and_openapi(server: Server) -> None:
    with api(server, None) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz").json()
        assert ready["checks"] == {"database": "ok", "redis": "ok"}
        # no AGENTQ_METRICS_TOKEN: metrics are not served on the API port (see
        # test_api_hardening for the token and the metrics port)
        assert http.get("/metrics").status_code == 404
        spec = http.get("/openapi.json").json()
        assert "/v1/conversations/{conversation_id}/messages" in spec["paths"]
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
