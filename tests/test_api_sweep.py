"""A bad-input sweep over every route of the API, over real HTTP against `agentq api` on
PostgreSQL. The routes are the app's own (`app.routes`), so a new route cannot be left
out: a route with a body needs an entry in `valid_bodies` or the sweep fails.

Every route gets: no key, a wrong content type, invalid JSON, NaN and Infinity, invalid
UTF-8, a 10 MB body, NUL in each string of its body, huge and negative numbers in each
number of its body and query, non-UUID, unknown and another tenant's ids, and NUL and
invalid UTF-8 in its string query parameters. The answers: never a 5xx; every 4xx is
problem+json whose `field` and `detail` name the problem; and nothing is written (rows
counted before and after, and the list routes read). Concurrent duplicate creates of an
agent (one name in several cases, ASCII and not) make one agent and answer 409 to the
rest; unicode names are accepted and unique in any case.

test_api_hardening.py covers the same checks on single routes in more depth (invalid
JSON's line and column, chunked oversize bodies, logs); test_bad_input.py the core's.
"""

from __future__ import annotations

import json
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import func, select

from agentq.api import create_app
from agentq.ops.keys import create_key
from agentq.runtime.embedded import EmbeddedRedis
from agentq.store.migrate import upgrade
from agentq.store.models import Agent, Conversation, Event, Message, Participant
from agentq.store.session import reader
from tests.api_support import Server, api_server
from tests.conftest import apply_env, create_pg_database, drop_pg_database

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("restored_env")]

#: the stream of a real conversation never ends: it is only called with ids that fail
ENDLESS = "stream_conversation"
#: larger than AGENTQ_API_MAX_BODY_BYTES (1 MiB by default)
TEN_MB = 10 * 1024 * 1024
HUGE = 10**30
#: ids that are not UUIDs (the last one URL-encoded: a quote and SQL)
NOT_UUIDS = ["not-a-uuid", "123", "%27%20OR%201%3D1--"]
JSON_TYPE = {"content-type": "application/json"}
#: numbers JSON does not allow: (as written, a body holding one, the field it is at)
NON_FINITE = [
    ("NaN", '{"nan": NaN}', "nan"),
    ("Infinity", '{"deep": {"inf": Infinity}}', "deep.inf"),
    ("-Infinity", '{"deep": {"list": [1, -Infinity]}}', "deep.list.1"),
    ("1e999", '{"big": 1e999}', "big"),
]
PROBLEM_KEYS = {"type", "title", "status", "detail", "field"}


def valid_bodies(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A body each body-taking operation accepts, by operationId."""
    return {
        "create_agent": {"name": f"sweep-{uuid.uuid4().hex[:8]}", "role": "sweeper"},
        "update_agent": {"role": "reviewer", "goal": "sweep"},
        "create_conversation": {"kind": "channel", "title": "sweep"},
        "add_participant": {"user_id": "sweeper", "display_name": "Sweeper"},
        "post_message": {"author_id": ids["user_id"], "content": "hello"},
    }


@dataclass(frozen=True)
class Op:
    """One operation of the app: a route and a method, with its documented shape."""

    op_id: str
    method: str
    path: str
    params: tuple[dict[str, Any], ...]
    body: dict[str, Any] | None  # the request body's schema, resolved
    secured: bool

    def path_params(self) -> list[str]:
        return [p["name"] for p in self.params if p["in"] == "path"]

    def query(self, *types: str) -> list[str]:
        return [
            p["name"] for p in self.params if p["in"] == "query" and _type(p["schema"]) in types
        ]


def _type(schema: dict[str, Any]) -> str | None:
    if "type" in schema:
        return str(schema["type"])
    kinds = [s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return str(kinds[0]) if kinds else None


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref") or next(
        (s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    if ref is None:
        return schema
    return dict(spec["components"]["schemas"][ref.rsplit("/", 1)[1]])


def operations() -> list[Op]:
    """Every operation of `create_app()`'s routes, as its OpenAPI document describes it."""
    app = create_app()
    spec = app.openapi()
    ops = []
    for route in iter_route_contexts(app.routes):  # app.routes, routers included
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        path = str(route.path_format)
        for method in sorted(route.methods or ()):
            doc = spec["paths"][path][method.lower()]
            body = doc.get("requestBody", {}).get("content", {}).get("application/json")
            ops.append(
                Op(
                    op_id=doc["operationId"],
                    method=method,
                    path=path,
                    params=tuple(doc.get("parameters", [])),
                    body=_resolve(body["schema"], spec) if body else None,
                    secured=bool(doc.get("security")),
                )
            )
    return ops


def numbers_of(body: dict[str, Any], spec: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of the integer and number fields of a body schema (one level of
    nested objects, e.g. `model_config.max_tokens`)."""
    found = []
    for name, prop in body.get("properties", {}).items():
        path = prefix + (name if not prefix else f".{name}")
        if _type(prop) in ("integer", "number"):
            found.append(path)
        elif not prefix and (inner := _resolve(prop, spec)) is not prop:
            found += numbers_of(inner, spec, path)
    return found


def with_value(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`body` with `value` at the dotted `path`."""
    out = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    here = out
    for part in parents:
        here = here.setdefault(part, {})
    here[last] = value
    return out


@dataclass
class Api:
    server: Server
    key: str
    other_key: str
    ids: dict[str, str]
    answers: list[tuple[str, httpx.Response]] = field(default_factory=list)
    cases: int = 0

    def http(self, key: str | None = "") -> httpx.Client:
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=60)

    def send(
        self, what: str, http: httpx.Client, method: str, url: str, **kw: Any
    ) -> httpx.Response:
        r = http.request(method, url, **kw)
        self.answers.append((f"{what}: {method} {url}", r))
        self.cases += 1
        return r


@pytest.fixture(scope="module")
def api(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    db = create_pg_database()
    upgrade(db)
    try:
        with EmbeddedRedis() as redis:
            env = {
                **base_env,
                "AGENTQ_DATABASE_URL": db,
                "AGENTQ_REDIS_URL": redis.url,
                "AGENTQ_API_METRICS_PORT": "0",
            }
            apply_env(env)
            key, _ = create_key(f"sweep-{uuid.uuid4().hex[:6]}")
            other, _ = create_key(f"sweep-other-{uuid.uuid4().hex[:6]}")
            with api_server(env, tmp_path_factory.mktemp("api")) as server:
                api = Api(server, key, other, {})
                with api.http() as http:
                    agent = http.post("/v1/agents", json={"name": "Sweeper"}).json()
                    conv = http.post("/v1/conversations", json={"kind": "channel"}).json()
                    parts = f"/v1/conversations/{conv['id']}/participants"
                    http.post(parts, json={"agent_id": agent["id"]}).raise_for_status()
                    user = http.post(parts, json={"user_id": "pat"}).json()
                api.ids = {
                    "agent_id": agent["id"],
                    "conversation_id": conv["id"],
                    "job_id": str(uuid.uuid4()),  # no worker runs: no job; unknown ids fail alike
                    "user_id": user["id"],
                }
                yield api
    finally:
        drop_pg_database(db)


def counts() -> dict[str, int]:
    with reader() as s:
        return {
            t.__tablename__: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Agent, Conversation, Participant, Message, Event)
        }


def listed(http: httpx.Client, ids: dict[str, str]) -> dict[str, Any]:
    """What the list routes show (the same before and after a failing request)."""
    conv = ids["conversation_id"]
    return {
        "agents": http.get("/v1/agents").json(),
        "conversations": http.get("/v1/conversations").json(),
        "participants": http.get(f"/v1/conversations/{conv}/participants").json(),
        "messages": http.get(f"/v1/conversations/{conv}/messages").json(),
        "events": http.get("/v1/events").json()["items"],
    }


def problem(r: httpx.Response, status: int, field: str | None = None, *says: str) -> None:
    """`r` is the problem `status`, naming `field` (if given) and saying each of `says`."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/problem+json"), where
    body = r.json()
    assert set(body) == PROBLEM_KEYS and body["status"] == status, (where, body)
    assert body["detail"], where
    if field is not None:
        assert body["field"] == field, (where, body)
        assert field.split(".")[-1] in body["detail"], (where, body)
    for text in says:
        assert text in body["detail"], (where, body)


def no_server_errors(api: Api) -> None:
    errors = [
        f"{what} -> {r.status_code} {r.text[:200]}"
        for what, r in api.answers
        if r.status_code >= 500
    ]
    assert errors == [], "\n".join(errors[:10])


def url_of(
    op: Op, ids: dict[str, str], *, failing: bool = False, override: dict[str, str] | None = None
) -> str:
    """The operation's URL with `ids`; a stream's only when the request fails before the
    stream starts (`failing`), else an unknown conversation's."""
    values = {p: ids[p] for p in op.path_params()}
    if op.op_id == ENDLESS and not failing:
        values["conversation_id"] = str(uuid.uuid4())
    values.update(override or {})
    return op.path.format(**values)


# -- the sweep ---------------------------------------------------------------------------------


def test_the_sweep_covers_every_route_and_the_document_declares_them() -> None:
    ops = operations()
    served = {(op.method, op.path) for op in ops}
    assert len(ops) >= 25 and len({op.op_id for op in ops}) == len(ops)
    assert ("POST", "/v1/conversations/{conversation_id}/messages") in served
    spec = create_app().openapi()
    assert "HTTPValidationError" not in json.dumps(spec)
    for op in ops:
        assert op.op_id.isidentifier() and op.op_id.islower(), op.op_id
        assert not op.op_id.endswith(("_get", "_post", "_patch", "_delete")), op.op_id
        responses = spec["paths"][op.path][op.method.lower()]["responses"]
        for status, response in responses.items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (op, status)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
        if op.secured:
            assert "401" in responses, op
        if op.path_params():
            assert {"404", "422"} <= set(responses), op
        if op.method in ("POST", "PATCH"):
            assert {"413", "415", "422"} <= set(responses), op


def test_bad_input_on_every_route_gets_4xx_naming_it_and_writes_nothing(api: Api) -> None:
    ops = operations()
    bodies = valid_bodies(api.ids)
    spec = create_app().openapi()
    missing = [op.op_id for op in ops if op.body is not None and op.op_id not in bodies]
    assert missing == [], f"add a valid body to valid_bodies() for {missing}"
    with api.http() as http:
        before, shown = counts(), listed(http, api.ids)
        for op in ops:
            sweep_route(api, http, op, bodies.get(op.op_id), spec)
        assert counts() == before
        assert listed(http, api.ids) == shown
    no_server_errors(api)
    print(f"sweep: {len(ops)} operations, {api.cases} bad requests, 0 server errors")


def sweep_route(
    api: Api, http: httpx.Client, op: Op, body: dict[str, Any] | None, spec: dict[str, Any]
) -> None:
    ids = api.ids
    url = url_of(op, ids)

    def send(
        what: str, *, client: httpx.Client = http, url: str = url, **kw: Any
    ) -> httpx.Response:
        return api.send(f"{op.op_id} {what}", client, op.method, url, **kw)

    # reads (the system routes too): an unknown query parameter holding NUL and invalid
    # UTF-8 is ignored, or answered as a problem
    if op.method == "GET":
        r = send("junk query", url=f"{url}?junk=%00%FF")
        if r.status_code >= 400:
            problem(r, r.status_code)
    # no key
    if op.secured:
        with api.http(None) as anonymous:
            r = send("no key", client=anonymous, json=body)
        problem(r, 401, None, "API key")
        assert r.headers["www-authenticate"] == "Bearer"
    # ids: not UUIDs, unknown, another tenant's
    for name in op.path_params():
        for bad in NOT_UUIDS:
            problem(
                send("non-UUID id", url=url_of(op, ids, override={name: bad}), json=body), 422, name
            )
        unknown = str(uuid.uuid4())
        problem(
            send("unknown id", url=url_of(op, ids, override={name: unknown}), json=body),
            404,
            None,
            unknown,
        )
        if op.op_id != ENDLESS:
            with api.http(api.other_key) as other:
                r = send("another tenant's id", client=other, json=body)
            problem(r, 404, None, ids[name])
    # the query, checked before a stream starts: huge and negative numbers, NUL and
    # invalid UTF-8 in strings
    real = url_of(op, ids, failing=True)
    for name in op.query("integer", "number"):
        for value in (HUGE, -1):
            r = send(f"query {name}={value}", url=real, params={name: value}, json=body)
            problem(r, 422, name)
    for name in op.query("string"):
        for raw in ("a%00b", "%FF%FE"):
            problem(send(f"query {name}={raw}", url=f"{real}?{name}={raw}", json=body), 422, name)
    if op.method not in ("POST", "PATCH"):
        return
    # bodies, checked before any route runs
    valid = json.dumps(body or {"x": 1})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        r = send(f"content type {content_type}", content=valid, headers=headers)
        problem(r, 415, "Content-Type", "application/json")
    problem(
        send("invalid JSON", content=valid[:-1], headers=JSON_TYPE), 422, "body", "not valid JSON"
    )
    problem(
        send("invalid UTF-8", content=b'{"a": "\xff\xfe"}', headers=JSON_TYPE), 422, "body", "UTF-8"
    )
    for written, text, path in NON_FINITE:
        problem(send(written, content=text, headers=JSON_TYPE), 422, path, written)
    problem(send("10 MB body", content=b"x" * TEN_MB, headers=JSON_TYPE), 413, "body")
    if body is None:
        return
    # the route's own body: required, an object, NUL-free strings, bounded numbers
    problem(send("empty body", headers=JSON_TYPE), 422, "body")
    problem(send("a list", json=[body]), 422, None)
    for name, value in body.items():
        if isinstance(value, str):
            problem(send(f"NUL in {name}", json={**body, name: value + "\x00"}), 422, name)
    for path in numbers_of(op.body or {}, spec):
        for value in (HUGE, -1):
            r = send(f"{path}={value}", json=with_value(body, path, value))
            problem(r, 422, path)


# -- races and names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Racer", "Zoë", "助手"])
def test_concurrent_creates_of_one_name_in_any_case_make_one_agent(api: Api, name: str) -> None:
    tag = uuid.uuid4().hex[:4]
    base = f"{name}-{tag}"
    spellings = [base, base.upper(), base.lower(), unicodedata.normalize("NFD", base.upper())] * 3
    barrier = threading.Barrier(len(spellings))
    with api.http() as http:

        def create(spelling: str) -> httpx.Response:
            barrier.wait()
            return api.send("race", http, "POST", "/v1/agents", json={"name": spelling})

        with ThreadPoolExecutor(len(spellings)) as pool:
            answers = list(pool.map(create, spellings))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] + [409] * (len(spellings) - 1), [r.text for r in answers]
        for r in answers:
            if r.status_code == 409:
                problem(r, 409, None, "already exists")
        mine = [a for a in http.get("/v1/agents").json() if a["name"].casefold() == base.casefold()]
        assert len(mine) == 1
    no_server_errors(api)


def test_unicode_names_are_accepted_unique_in_any_case_and_refusals_say_what_is_allowed(
    api: Api,
) -> None:
    tag = uuid.uuid4().hex[:4]
    with api.http() as http:
        for name in (f"Zoë{tag}", f"助手{tag}", f"Ólafur-2{tag}"):
            made = api.send("unicode name", http, "POST", "/v1/agents", json={"name": name})
            assert made.status_code == 201, made.text
            assert made.json()["name"] == name
            again = http.post("/v1/agents", json={"name": name.upper()})
            problem(again, 409, None, "already exists")
            got = http.get(f"/v1/agents/{made.json()['id']}").json()
            assert got["name"] == name
        names = {a["name"] for a in http.get("/v1/agents").json()}
        assert {f"Zoë{tag}", f"助手{tag}", f"Ólafur-2{tag}"} <= names
        before = counts()
        for bad, says in (
            ("two words", "' ' is not allowed"),
            ("1st", "start with a letter"),
            ("smile🙂", "not allowed"),
        ):
            r = api.send("bad name", http, "POST", "/v1/agents", json={"name": bad})
            problem(r, 422, "name", says, "letters, digits, _ . or -", "any script")
        assert counts() == before
    no_server_errors(api)


def test_concurrent_posts_with_one_idempotency_key_store_one_message(api: Api) -> None:
    ids = api.ids
    url = f"/v1/conversations/{ids['conversation_id']}/messages"
    key = f"sweep-{uuid.uuid4().hex}"
    barrier = threading.Barrier(10)
    with api.http() as http:
        before = len(listed(http, ids)["messages"]["items"])

        def post(_: int) -> httpx.Response:
            barrier.wait()
            body = {"author_id": ids["user_id"], "content": "once"}
            return api.send(
                "idempotent", http, "POST", url, json=body, headers={"Idempotency-Key": key}
            )

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(post, range(10)))
        assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
        assert len({r.json()["message"]["id"] for r in answers}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 9
        assert len(listed(http, ids)["messages"]["items"]) == before + 1
    no_server_errors(api)
