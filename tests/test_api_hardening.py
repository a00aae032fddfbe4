"""The API against hostile input and lost races, over real HTTP against `agentq api` on
PostgreSQL: strict JSON (415, NaN/Infinity, invalid JSON and UTF-8, oversized bodies)
answered before anything is written; concurrent duplicate creates answered without a 5xx;
forced database errors whose bodies stay out of the API's JSON logs; metrics only with a
token or on their own port, labelled by agent id."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from agentq.ops.keys import create_key
from agentq.runtime.embedded import EmbeddedRedis
from agentq.store.migrate import upgrade
from agentq.store.models import Conversation, Message, Participant, Tenant
from agentq.store.session import reader
from tests.api_support import Server, api_server, free_port
from tests.conftest import apply_env, create_pg_database, drop_pg_database

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_env")]

METRICS_TOKEN = "metrics-token-7c1f9e2a"
#: posted bodies carry it; it must never reach a log
MARKER = "okapi-vellum-body"
#: a message holding this fails in the database (a trigger raises)
RAISES = "force-raise-9f3"
#: a message holding this violates a CHECK constraint (PostgreSQL quotes the row)
VIOLATES = "force-check-4b2"


@dataclass
class Api:
    server: Server
    key: str
    metrics_port: int
    db: str

    def http(self, key: str | None = "") -> httpx.Client:
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    db = create_pg_database()
    upgrade(db)
    engine = create_engine(db)
    with engine.begin() as conn:  # forced database errors, for bodies that ask for one
        conn.execute(
            text(
                "CREATE FUNCTION forced_failure() RETURNS trigger AS $$ BEGIN "
                f"IF position('{RAISES}' in NEW.content) > 0 THEN "
                "RAISE EXCEPTION 'forced failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER forced_failure BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION forced_failure()"
            )
        )
        conn.execute(
            text(
                "ALTER TABLE messages ADD CONSTRAINT forced_check "
                f"CHECK (position('{VIOLATES}' in content) = 0)"
            )
        )
    engine.dispose()
    port = free_port()
    try:
        with EmbeddedRedis() as redis:
            env = {
                **base_env,
                "AGENTQ_DATABASE_URL": db,
                "AGENTQ_REDIS_URL": redis.url,
                "AGENTQ_METRICS_TOKEN": METRICS_TOKEN,
                "AGENTQ_API_METRICS_PORT": str(port),
                "AGENTQ_LOG_FORMAT": "",  # the log file is no terminal: JSON lines
            }
            apply_env(env)
            key, _ = create_key(f"hardening-{uuid.uuid4().hex[:6]}")
            with api_server(env, tmp_path_factory.mktemp("api")) as server:
                yield Api(server, key, port, db)
    finally:
        drop_pg_database(db)


def _dm(http: httpx.Client) -> tuple[str, str]:
    conv = http.post("/v1/conversations", json={"kind": "dm"})
    assert conv.status_code == 201, conv.text
    cid = conv.json()["id"]
    user = http.post(f"/v1/conversations/{cid}/participants", json={"user_id": "u1"})
    assert user.status_code == 201, user.text
    return cid, user.json()["id"]


def _counts() -> tuple[int, int, int]:
    with reader() as s:
        return tuple(  # type: ignore[return-value]
            int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Conversation, Participant, Message)
        )


def _problem(r: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert set(problem) == {"type", "title", "status", "detail", "field"}
    assert problem["status"] == status and problem["field"] == field, problem
    return dict(problem)


# -- strict JSON ------------------------------------------------------------------------------


def test_non_finite_numbers_get_422_naming_the_field_and_write_nothing(api: Api) -> None:
    with api.http() as http:
        cid, uid = _dm(http)
        before = _counts()
        cases = [
            ("/v1/conversations", '{"kind": "dm", "settings": {"debounce_seconds": NaN}}'),
            ("/v1/conversations", '{"settings": {"debounce_seconds": Infinity}}'),
            ("/v1/conversations", '{"settings": {"hop_limit": -Infinity}}'),
            ("/v1/conversations", '{"settings": {"debounce_seconds": 1e999}}'),
            ("/v1/agents", '{"name": "nan-bot", "model_config": {"temperature": NaN}}'),
            (f"/v1/conversations/{cid}/participants", '{"user_id": "x", "extra": [1, NaN]}'),
            (
                f"/v1/conversations/{cid}/messages",
                f'{{"author_id": "{uid}", "content": "{MARKER}", "meta": {{"a": Infinity}}}}',
            ),
        ]
        fields = [
            "settings.debounce_seconds",
            "settings.debounce_seconds",
            "settings.hop_limit",
            "settings.debounce_seconds",
            "model_config.temperature",
            "extra.1",
            "meta.a",
        ]
        for (url, body), field in zip(cases, fields, strict=True):
            r = http.post(url, content=body, headers={"content-type": "application/json"})
            problem = _problem(r, 422, field)
            assert field in problem["detail"]
        assert _counts() == before


def test_invalid_json_names_line_and_column_and_writes_nothing(api: Api) -> None:
    with api.http() as http:
        cid, uid = _dm(http)
        before = _counts()
        url = f"/v1/conversations/{cid}/messages"
        json_type = {"content-type": "application/json"}
        r = http.post(url, content=f'{{"author_id": "{uid}",\n "content": }}', headers=json_type)
        problem = _problem(r, 422, "body")
        assert "line 2, column" in problem["detail"], problem
        r = http.post(url, content=b'{"content": "\xff\xfe"}', headers=json_type)
        assert "UTF-8" in _problem(r, 422, "body")["detail"]
        r = http.post("/v1/conversations", content=b"[" * 100_000, headers=json_type)
        assert r.status_code == 422, r.text
        assert _counts() == before


def test_wrong_content_type_gets_415_naming_json_and_writes_nothing(api: Api) -> None:
    with api.http() as http:
        cid, uid = _dm(http)
        before = _counts()
        body = json.dumps({"author_id": uid, "content": MARKER})
        url = f"/v1/conversations/{cid}/messages"
        for headers in (
            {"content-type": "application/x-www-form-urlencoded"},  # what curl -d sends
            {"content-type": "text/plain"},
            {},
        ):
            r = http.post(url, content=body, headers=headers)
            assert "application/json" in _problem(r, 415, "Content-Type")["detail"]
        r = http.post(
            url, content=body, headers={"content-type": "application/json; charset=utf-8"}
        )
        assert r.status_code == 201, r.text
        assert _counts() == (before[0], before[1], before[2] + 1)


def test_oversized_body_gets_413_and_writes_nothing(api: Api) -> None:
    with api.http() as http:
        cid, uid = _dm(http)
        before = _counts()
        big = json.dumps({"author_id": uid, "content": "x" * 10_000_000})
        r = http.post(
            f"/v1/conversations/{cid}/messages",
            content=big,
            headers={"content-type": "application/json"},
        )
        _problem(r, 413, "body")

        def chunks() -> Iterator[bytes]:  # no Content-Length: read until the limit
            for _ in range(20):
                yield b"x" * 100_000

        r = http.post(
            f"/v1/conversations/{cid}/messages",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        _problem(r, 413, "body")
        assert _counts() == before


# -- races -----------------------------------------------------------------------------------


def test_concurrent_duplicate_participants_make_one_and_no_5xx(api: Api) -> None:
    with api.http() as http:
        conv = http.post("/v1/conversations", json={"kind": "channel"}).json()
        url = f"/v1/conversations/{conv['id']}/participants"
        barrier = threading.Barrier(10)

        def add(_: int) -> httpx.Response:
            barrier.wait()
            return http.post(url, json={"user_id": "same-user"})

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(add, range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert all(s in (201, 409) for s in statuses), [(r.status_code, r.text) for r in answers]
    # Adding a participant that exists returns it: every success names the one row.
    assert len({r.json()["id"] for r in answers if r.status_code == 201}) == 1
    for r in answers:
        if r.status_code == 409:
            _problem(r, 409, None)
    with reader() as s:
        rows = s.scalar(
            select(func.count()).where(
                Participant.conversation_id == uuid.UUID(conv["id"]),
                Participant.user_id == "same-user",
            )
        )
    assert rows == 1


def test_concurrent_key_creates_for_one_new_tenant_all_succeed(api: Api) -> None:
    apply_env({"AGENTQ_DATABASE_URL": api.db})
    tenant = f"racing-{uuid.uuid4().hex[:6]}"
    barrier = threading.Barrier(10)

    def make(i: int) -> uuid.UUID:
        barrier.wait()
        return create_key(f"key-{i}", tenant)[1].tenant_id

    with ThreadPoolExecutor(10) as pool:
        tenants = set(pool.map(make, range(10)))
    assert len(tenants) == 1
    with reader() as s:
        assert s.scalar(select(func.count()).where(Tenant.name == tenant)) == 1


# -- logs ------------------------------------------------------------------------------------


def test_database_errors_keep_bodies_and_keys_out_of_the_api_log(api: Api) -> None:
    with api.http() as http:
        cid, uid = _dm(http)
    url = f"/v1/conversations/{cid}/messages"
    before = _counts()
    with api.http() as http:  # the server closes a connection that answered 500
        r = http.post(url, json={"author_id": uid, "content": f"{MARKER} {RAISES}"})
        _problem(r, 500, None)
    with api.http() as http:
        # A CHECK violation: PostgreSQL's error quotes the failing row, body included.
        r = http.post(url, json={"author_id": uid, "content": f"{MARKER} {VIOLATES}"})
        _problem(r, 409, None)
    assert _counts() == before
    lines = [line for line in api.server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is a JSON object
    text_ = "\n".join(lines)
    assert any(r["level"] == "ERROR" and "forced failure" in r.get("exc", "") for r in records), (
        text_[-3000:]
    )
    assert any(
        r.get("conversation_id") == cid and "ProgrammingError" in r["message"] for r in records
    )
    assert any("IntegrityError" in r["message"] for r in records)
    assert "parameters hidden" in text_
    assert MARKER not in text_
    assert api.key not in text_
    assert METRICS_TOKEN not in text_


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_need_the_token_or_their_own_port_and_name_no_agent(api: Api) -> None:
    name = f"secret-name-{uuid.uuid4().hex[:6]}"
    with api.http() as http:
        agent = http.post("/v1/agents", json={"name": name})
        assert agent.status_code == 201, agent.text
        agent_id = agent.json()["id"]
    with api.http(None) as anon:
        _problem(anon.get("/metrics"), 401, None)
        wrong = anon.get("/metrics", headers={"Authorization": "Bearer nope"})
        _problem(wrong, 401, None)
        _problem(anon.get("/metrics", headers={"Authorization": f"Bearer {api.key}"}), 401, None)
        ok = anon.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    own = httpx.get(f"http://127.0.0.1:{api.metrics_port}/metrics", timeout=10)
    for scraped in (ok, own):
        assert scraped.status_code == 200
        assert f'agentq_agent_active_jobs{{agent="{agent_id}"}}' in scraped.text
        assert name not in scraped.text


def test_metrics_are_not_served_on_the_api_port_without_a_token(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **base_env,
        "AGENTQ_DATABASE_URL": f"sqlite:///{tmp_path / 'agentq.db'}",
        "AGENTQ_METRICS_TOKEN": "",
        "AGENTQ_API_METRICS_PORT": "0",
    }
    upgrade(env["AGENTQ_DATABASE_URL"])
    with api_server(env, tmp_path) as server:
        r = httpx.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 404
    assert "AGENTQ_METRICS_TOKEN" in r.json()["detail"]
